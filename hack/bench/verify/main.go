// Command verify compares Gantry's signature verification with the upstream
// cosign CLI on the same signed image in the test registry, cold and warm,
// and prints the ratios. It needs the test environment (hack/testenv up).
//
//	go run ./hack/bench/verify [-n 20] [-gantry bin/gantry]
//
// Measured:
//   - gantry in-process, cold: a new registry client, policy and verifier
//     per verification (fresh connections), what `gantry verify` does
//     once it runs; warm: one verifier reused, as admission runs it.
//   - cosign library in-process (cosign.VerifyImageSignatures, a new
//     registry client each time): the baseline of the in-process figures.
//   - gantry process (with -gantry BIN; `make bench` passes bin/gantry):
//     `gantry verify` as a process.
//   - cosign process: `cosign verify --key … --insecure-ignore-tlog`, the
//     baseline of the process figures; "first" is the first run with an
//     empty HOME/TUF cache.
//
// Processes are compared with processes, in-process work with in-process
// work; every figure is also printed as a JSON line (hack/bench/internal/report).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	sigs "github.com/sigstore/cosign/v2/pkg/signature"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/hack/bench/internal/report"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/signer"
)

func main() {
	n := flag.Int("n", 20, "warm runs of each kind")
	gantryBin := flag.String("gantry", "", "a gantry binary to time `gantry verify` as a process too (e.g. bin/gantry)")
	flag.Parse()
	if err := run(*n, *gantryBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
}

func run(n int, gantryBin string) error {
	env, err := testenv.Open()
	if err != nil {
		return err
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gantry-bench-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// A signed image, a key pair on disk and a policy.
	regCfg := config.Registry{Insecure: []string{env.Registry}, Timeout: 10 * time.Second}
	reg, err := oci.New(regCfg)
	if err != nil {
		return err
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(fmt.Sprintf("%s/bench/verify:%d", env.Registry, time.Now().UnixNano()), name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(tag, img, reg.RemoteOptions(ctx)...); err != nil {
		return err
	}
	h, _ := img.Digest()
	digest, err := reg.ParseDigest(tag.Context().String() + "@" + h.String())
	if err != nil {
		return err
	}
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("bench"), nil })
	if err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	policyPath := filepath.Join(dir, "policy.yaml")
	for p, b := range map[string][]byte{keyPath: kb.PrivateBytes, pubPath: kb.PublicBytes,
		policyPath: []byte("identities:\n  - {name: release, key: cosign.pub}\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	sc := config.DefaultSigner()
	sc.KeySource, sc.KeyFile = "file", keyPath
	s, err := signer.New(ctx, sc, reg, signer.WithGetenv(func(string) string { return "bench" }))
	if err != nil {
		return err
	}
	if _, err := s.Sign(ctx, digest); err != nil {
		return err
	}

	// gantry, in process.
	inProcess := func() error {
		r, err := oci.New(regCfg)
		if err != nil {
			return err
		}
		pol, err := signer.LoadPolicy(policyPath)
		if err != nil {
			return err
		}
		v, err := signer.NewVerifier(pol, r)
		if err != nil {
			return err
		}
		return verified(v.Verify(ctx, digest))
	}
	gCold, err := timeOnce(inProcess)
	if err != nil {
		return fmt.Errorf("gantry cold: %w", err)
	}
	gColdMore, err := timeN(n, inProcess)
	if err != nil {
		return err
	}
	pol, err := signer.LoadPolicy(policyPath)
	if err != nil {
		return err
	}
	v, err := signer.NewVerifier(pol, reg)
	if err != nil {
		return err
	}
	gWarm, err := timeN(n, func() error { return verified(v.Verify(ctx, digest)) })
	if err != nil {
		return err
	}

	// cosign's own library, in process: the in-process baseline. A new
	// registry client each time (cosign keeps no verdict cache).
	pub, err := sigs.PublicKeyFromKeyRef(ctx, pubPath)
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(digest.String(), name.Insecure)
	if err != nil {
		return err
	}
	cosignLib := func() error {
		co := &cosign.CheckOpts{SigVerifier: pub, IgnoreTlog: true, IgnoreSCT: true,
			RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(remote.WithTransport(http.DefaultTransport.(*http.Transport).Clone()))}}
		found, _, err := cosign.VerifyImageSignatures(ctx, ref, co)
		if err == nil && len(found) == 0 {
			err = fmt.Errorf("cosign library: no verified signature")
		}
		return err
	}
	lCold, err := timeOnce(cosignLib)
	if err != nil {
		return err
	}
	lMore, err := timeN(n, cosignLib)
	if err != nil {
		return err
	}

	// cosign CLI, as a process.
	home := filepath.Join(dir, "home")
	cosignRun := func() error {
		cmd := exec.Command(env.Cosign, "verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", digest.String())
		cmd.Env = []string{"HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"), "PATH=" + os.Getenv("PATH")}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cosign verify: %v\n%s", err, out)
		}
		return nil
	}
	cCold, err := timeOnce(cosignRun)
	if err != nil {
		return err
	}
	cWarm, err := timeN(n, cosignRun)
	if err != nil {
		return err
	}
	var gProcCold, gProc time.Duration
	if gantryBin != "" {
		grun := func() error {
			cmd := exec.Command(gantryBin, "verify", digest.String(), "--policy", policyPath)
			cmd.Env = []string{"GANTRY_REGISTRY_INSECURE=" + env.Registry, "HOME=" + home, "PATH=" + os.Getenv("PATH")}
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("gantry verify: %v\n%s", err, out)
			}
			return nil
		}
		if gProcCold, err = timeOnce(grun); err != nil {
			return err
		}
		if gProc, err = timeN(n, grun); err != nil {
			return err
		}
	}

	rep := report.New("verify")
	fmt.Printf("image %s (1 signature, policy with 1 key), median of %d runs (first: 1 run)\n", digest, n)
	fmt.Printf("%-52s %12s %8s\n", "measurement", "time", "ratio")
	row := func(f *report.Figure) {
		r := ""
		if f.Ratio != nil {
			r = fmt.Sprintf("%.2fx", *f.Ratio)
		}
		fmt.Printf("%-52s %10.3fms %8s\n", f.Name, f.Value, r)
	}
	// In process: Gantry's verifier against cosign's library.
	libCold := rep.Duration("cosign library, first", report.InProcess, lCold, 1)
	libMore := rep.Duration("cosign library, new client each", report.InProcess, lMore, n)
	figs := []*report.Figure{libCold, libMore}
	for _, c := range []struct {
		f    *report.Figure
		base *report.Figure
	}{
		{rep.Duration("gantry verifier, first", report.InProcess, gCold, 1), libCold},
		{rep.Duration("gantry verifier, new client each", report.InProcess, gColdMore, n), libMore},
		{rep.Duration("gantry verifier, reused (verdict cache)", report.InProcess, gWarm, n), libMore},
	} {
		if err := rep.Compare(c.f, *c.base, "<=1.0"); err != nil {
			return err
		}
		figs = append(figs, c.f)
	}
	// Processes: `gantry verify` against `cosign verify`.
	cliCold := rep.Duration("cosign verify process, first (empty TUF cache)", report.Process, cCold, 1)
	cliWarm := rep.Duration("cosign verify process", report.Process, cWarm, n)
	figs = append(figs, cliCold, cliWarm)
	if gantryBin != "" {
		pc := rep.Duration("gantry verify process, first", report.Process, gProcCold, 1)
		pw := rep.Duration("gantry verify process", report.Process, gProc, n)
		if err := rep.Compare(pc, *cliCold, "<=1.0"); err != nil {
			return err
		}
		if err := rep.Compare(pw, *cliWarm, "<=1.0"); err != nil {
			return err
		}
		figs = append(figs, pc, pw)
	}
	for _, f := range figs {
		row(f)
	}
	fmt.Println()
	return rep.WriteJSON(os.Stdout)
}

func verified(res *signer.Result, err error) error {
	if err != nil {
		return err
	}
	if !res.Verified {
		return fmt.Errorf("not verified: %s", res.Message)
	}
	return nil
}

func timeOnce(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// timeN returns the median of n runs.
func timeN(n int, f func() error) (time.Duration, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		d, err := timeOnce(f)
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}
