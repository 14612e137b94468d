//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/admission/online"
	"github.com/gantry-dev/gantry/admission/webhook"
	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/pipelines"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "admission",
			Short: "Run the admission webhook server (TLS): POST /validate, POST /mutate, /healthz, /readyz, /metrics",
			Long: `Serves AdmissionReview (admission.k8s.io/v1) for Pods (incl. ephemeral
containers) and the pod templates of Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob and ReplicationController: every image signed, Pod
Security Standards, no root containers. POST /mutate (the mutating webhook)
replaces each image tag by the digest it points to after verifying that
digest's signature, so ` + "`kubectl run --image REG/fn:1.2`" + ` is admitted as
REG/fn:1.2@sha256:…; an unsigned digest is refused. See docs/admission.md.`,
			Args: cobra.NoArgs,
		}
		f := cmd.Flags()
		listen := f.String("listen", "", "TLS listen address (admission.listen; default :8443)")
		certFile := f.String("tls-cert", "", "serving certificate file, reloaded when it changes (admission.tls.certFile)")
		keyFile := f.String("tls-key", "", "serving key file (admission.tls.keyFile)")
		selfSigned := f.String("tls-self-signed", "", "write a CA (ca.crt) and a serving certificate into DIR and use them (demos only)")
		hosts := f.String("tls-hosts", "gantry-admission,gantry-admission.gantry-system,gantry-admission.gantry-system.svc,localhost,127.0.0.1",
			"DNS names and IPs of the self-signed certificate (with --tls-self-signed)")
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			ac := &a.cfg.Admission
			if *listen != "" {
				ac.Listen = *listen
			}
			if *certFile != "" || *keyFile != "" {
				ac.TLS.CertFile, ac.TLS.KeyFile = *certFile, *keyFile
			}
			if *selfSigned != "" {
				if ac.TLS.CertFile != "" {
					return usageError("--tls-self-signed and a certificate file are mutually exclusive")
				}
				files, err := tlsreload.SelfSigned(*selfSigned, splitList(*hosts), 365*24*time.Hour)
				if err != nil {
					return fmt.Errorf("--tls-self-signed: %w", err)
				}
				ac.TLS.CertFile, ac.TLS.KeyFile = files.Cert, files.Key
				a.log.Info("self-signed certificate ready; put ca.crt in the webhook's caBundle", "ca", files.CA)
			}
			if err := ac.Validate(); err != nil {
				return usageError(err.Error())
			}
			if ac.TLS.CertFile == "" {
				return usageError("no serving certificate: set admission.tls.certFile/keyFile, --tls-cert/--tls-key, or --tls-self-signed DIR")
			}
			rl, err := tlsreload.NewReloader(ac.TLS.CertFile, ac.TLS.KeyFile)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			// Exemptions used and break-glass go to the audit log: the
			// file, and the GANTRY_AUDIT stream when the queue is external.
			var js jetstream.JetStream
			if a.cfg.Queue.NATSURL != "" && a.cfg.Audit.Stream {
				var closeJS func()
				js, closeJS, err = pipelines.ConnectExternal(cmd.Context(), externalQueue(a))
				if err != nil {
					return fmt.Errorf("audit stream: %w", err)
				}
				defer closeJS()
			}
			sink, closeAudit, err := openAuditSink(cmd.Context(), a, js)
			if err != nil {
				return err
			}
			defer closeAudit()
			auditCertRotation(rl, &audit.Recorder{Sink: sink, Log: a.log}, "admission")
			eval, err := online.Build(a.cfg, online.Options{Log: a.log, Registerer: reg, Audit: sink})
			if err != nil {
				return err
			}
			if ac.Audit.Interval > 0 {
				if err := startAdmissionAudit(cmd.Context(), a, reg); err != nil {
					return fmt.Errorf("admission.audit: %w", err)
				}
			}
			h := webhook.New(eval, webhook.Options{MaxBodyBytes: ac.MaxBodyBytes, Log: a.log, Registry: reg, Ready: rl.Err})
			ln, err := net.Listen("tcp", ac.Listen)
			if err != nil {
				return err
			}
			a.log.Info("admission webhook listening", "addr", ln.Addr().String(), "mode", ac.Mode,
				"level", ac.PodSecurity.Level, "verifySignatures", ac.VerifySignatures, "requireDigest", ac.RequireDigest)
			return webhook.Serve(cmd.Context(), ln, rl.TLSConfig(), h, a.log)
		}
		return cmd
	})
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
