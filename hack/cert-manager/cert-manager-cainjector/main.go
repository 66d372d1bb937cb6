// cert-manager-cainjector: cert-manager's CA injector (the package
// github.com/cert-manager/cert-manager/pkg/controller/cainjector, pinned by
// CERT_MANAGER_VERSION) run by a small main of ours, for the tests: the module proxy serves
// cert-manager's root module only, not the cmd/cainjector module whose main upstream ships.
// It writes the CA of the Certificate named by `cert-manager.io/inject-ca-from: <ns>/<name>`
// (or of the Secret named by `cert-manager.io/inject-ca-from-secret`) into the caBundle of
// Mutating/ValidatingWebhookConfigurations, APIServices and CRD conversion webhooks.
//
// Not here: leader election (one instance per namespace, see --namespace), metrics, pprof.
// Built by hack/build-tools.sh cert-manager.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	kscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmscheme "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/scheme"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-cainjector: %v\n", err)
		logf.FlushLogs()
		os.Exit(1)
	}
	logf.FlushLogs()
}

func run() error {
	// A flag set of our own: controller-runtime defines --kubeconfig on flag.CommandLine.
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster (in-cluster config when empty)")
	master := fs.String("master", "", "API server URL, overrides the kubeconfig's")
	namespace := fs.String("namespace", "", "read CAs only from Certificates and Secrets of this namespace (empty: every namespace)")
	certificates := fs.Bool("enable-certificates-data-source", true, "read CAs from Certificates (cert-manager.io/inject-ca-from)")
	mutating := fs.Bool("enable-mutatingwebhookconfigurations-injectable", true, "inject into MutatingWebhookConfigurations")
	validating := fs.Bool("enable-validatingwebhookconfigurations-injectable", true, "inject into ValidatingWebhookConfigurations")
	apiservices := fs.Bool("enable-apiservices-injectable", true, "inject into APIServices")
	crds := fs.Bool("enable-customresourcedefinitions-injectable", true, "inject into CRDs' conversion webhooks")
	leaderElect := fs.Bool("leader-elect", false, "not supported: must stay false (run one instance per namespace)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *leaderElect {
		return fmt.Errorf("--leader-elect=true is not supported by this build")
	}

	log := logf.Log.WithName("cainjector")
	ctrl.SetLogger(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, log)

	cfg, err := clientcmd.BuildConfigFromFlags(*master, *kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg = util.RestConfigWithUserAgent(cfg, "cainjector")

	scheme := runtime.NewScheme()
	utilruntime.Must(kscheme.AddToScheme(scheme))
	utilruntime.Must(cmscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))

	var namespaces map[string]cache.Config
	if *namespace != "" {
		namespaces = map[string]cache.Config{*namespace: {}}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			ReaderFailOnMissingInformer: true,
			DefaultNamespaces:           namespaces,
		},
		// Secrets are watched as metadata only (the injector's own choice, to cache no key
		// material); their data is read from the API server.
		Client: client.Options{
			Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}},
		},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		Namespace:                    *namespace,
		EnableCertificatesDataSource: *certificates,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   *mutating,
			cainjector.ValidatingWebhookConfigurationName: *validating,
			cainjector.APIServiceName:                     *apiservices,
			cainjector.CustomResourceDefinitionName:       *crds,
		},
	})
	if err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	log.Info("cainjector starting", "namespace", *namespace)
	return mgr.Start(ctx)
}
