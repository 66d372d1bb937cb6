// cert-manager-controller: cert-manager's own controllers (the packages of the module
// github.com/cert-manager/cert-manager, pinned by CERT_MANAGER_VERSION) run by a small main of
// ours, for the tests. The module proxy serves cert-manager's root module only, not the
// separate cmd/controller module whose main upstream ships; this main does what that one
// does for the issuers the tests use (SelfSigned, CA): it builds the controller context,
// constructs each enabled controller, starts the shared informers and runs until SIGTERM.
//
// Not here: ACME, Vault, Venafi, the ingress/gateway shims, leader election (one instance
// per namespace, see --namespace), the webhook. Built by hack/build-tools.sh cert-manager.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Each controller registers itself with controller.Known() when its package loads.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer kinds the (Cluster)Issuer controllers know how to set up.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		logf.FlushLogs()
		os.Exit(1)
	}
	logf.FlushLogs()
}

func run() error {
	// A flag set of our own: controller-runtime defines --kubeconfig on flag.CommandLine.
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs) // -v, --logtostderr, ...
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (in-cluster config when empty)")
	master := fs.String("master", "", "API server URL, overrides the kubeconfig's")
	namespace := fs.String("namespace", "", "act only in this namespace (empty: every namespace; then ClusterIssuers are reconciled too)")
	clusterResourceNamespace := fs.String("cluster-resource-namespace", "", "namespace of the Secrets of ClusterIssuers (default: --namespace, or kube-system)")
	ownerRef := fs.Bool("enable-certificate-owner-ref", false, "make each Certificate the owner of its Secret (the Secret is deleted with it)")
	workers := fs.Int("concurrent-workers", 5, "workers per controller")
	qps := fs.Float64("kube-api-qps", 20, "requests per second to the API server (when it does not do priority and fairness)")
	burst := fs.Int("kube-api-burst", 50, "burst of requests to the API server (when it does not do priority and fairness)")
	minBackoff := fs.Duration("certificate-request-minimum-backoff-duration", time.Hour, "first wait after a failed issuance")
	maxBackoff := fs.Duration("certificate-request-maximum-backoff-duration", 32*time.Hour, "longest wait after failed issuances")
	metricsAddr := fs.String("metrics-listen-address", "", "serve /metrics there (empty: not served)")
	leaderElect := fs.Bool("leader-elect", false, "not supported: must stay false (run one instance per namespace)")
	featureGates := fs.String("feature-gates", "", "cert-manager feature gates, e.g. ServerSideApply=true")
	known := make([]string, 0, len(controller.Known()))
	for n := range controller.Known() {
		known = append(known, n)
	}
	sort.Strings(known)
	enabled := fs.String("controllers", "*", "comma-separated controllers to run, or * for all of: "+strings.Join(known, ","))
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}

	if *leaderElect {
		return fmt.Errorf("--leader-elect=true is not supported by this build")
	}
	if *featureGates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(*featureGates); err != nil {
			return fmt.Errorf("--feature-gates: %w", err)
		}
	}
	if *clusterResourceNamespace == "" {
		*clusterResourceNamespace = *namespace
		if *clusterResourceNamespace == "" {
			*clusterResourceNamespace = "kube-system"
		}
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*enabled, ",") {
		if n = strings.TrimSpace(n); n == "*" {
			for _, k := range known {
				want[k] = true
			}
		} else if n != "" {
			if _, ok := controller.Known()[n]; !ok {
				return fmt.Errorf("--controllers: unknown controller %q (known: %s)", n, strings.Join(known, ","))
			}
			want[n] = true
		}
	}
	if *namespace != "" {
		// ClusterIssuers are cluster-wide: not for an instance scoped to one namespace.
		delete(want, clusterissuers.ControllerName)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := logf.Log.WithName("controller")
	ctx = logf.NewContext(ctx, log)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		APIServerHost:      *master,
		KubernetesAPIQPS:   float32(*qps),
		KubernetesAPIBurst: *burst,
		Namespace:          *namespace,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *clusterResourceNamespace},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           *ownerRef,
			CertificateRequestMinimumBackoffDuration: *minBackoff,
			CertificateRequestMaximumBackoffDuration: *maxBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-listen-address: %w", err)
		}
		srv := base.Metrics.NewServer(ln)
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx) //nolint:contextcheck
		})
		g.Go(func() error {
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				return err
			}
			return nil
		})
	}

	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c, err := controller.Known()[n](factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", n, err)
		}
		g.Go(func() error { return c.Run(*workers, gctx) })
	}
	// The controllers registered their informers: start them.
	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())
	log.Info("cert-manager controllers started", "namespace", *namespace, "controllers", names)

	err = g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}
