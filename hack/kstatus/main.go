// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the
// library Flux's kustomize-controller health checks use) computes for one object.
//
// It reads one object, JSON or YAML, on stdin and writes one line of JSON:
//
//	{"status":"Failed","message":"...","conditions":[{"type":"Stalled",...}]}
//
// status is kstatus's Status (InProgress, Failed, Current, Terminating), message its
// Message and conditions the standard conditions it derived (Reconciling or Stalled, with
// their reason). Exit codes: 0 computed, 1 kstatus returned an error, 2 unreadable input.
//
// Built and cached by hack/build-tools.sh (component kstatus), version pinned in
// hack/versions.env (CLI_UTILS_VERSION); tests find it as the tool "kstatus".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type output struct {
	Status     string      `json:"status"`
	Message    string      `json:"message"`
	Conditions []condition `json:"conditions"`
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < object.json (or .yaml): prints kstatus's status and message as JSON")
		os.Exit(2)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(2, "reading stdin: %v", err)
	}
	// JSON is YAML: one path for both. The object is then decoded as the API machinery
	// decodes a server's answer (unstructured: integers stay int64), so that
	// metadata.generation and status.observedGeneration read as kstatus expects.
	js, err := yaml.YAMLToJSON(in)
	if err != nil {
		fail(2, "stdin is neither JSON nor YAML: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		fail(2, "stdin is not a Kubernetes object (apiVersion, kind): %v", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		fail(1, "kstatus: %v", err)
	}
	out := output{Status: res.Status.String(), Message: res.Message, Conditions: []condition{}}
	for _, c := range res.Conditions {
		out.Conditions = append(out.Conditions, condition{
			Type: c.Type.String(), Status: string(c.Status), Reason: c.Reason, Message: c.Message,
		})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(1, "writing the result: %v", err)
	}
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(code)
}
