package signer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/gantry-dev/gantry/config"
	goci "github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/registryproxy"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// newCosign3CLI is the cosign v3 CLI of the test environment.
func newCosign3CLI(t *testing.T, r *rig, password string) *cosignCLI {
	return &cosignCLI{t: t, bin: testenv.RequireCosign3(t, r.env), dir: t.TempDir(), password: password}
}

// cosign3Sign signs d with cosign v3's defaults (a Sigstore bundle stored
// as an OCI referrer), offline: no transparency log, no signing config.
func cosign3Sign(t *testing.T, cli *cosignCLI, keyPath string, d name.Digest) {
	t.Helper()
	if out, err := cli.run("sign", "--key", keyPath, "--tlog-upload=false", "--use-signing-config=false", "-y", "--allow-http-registry", d.String()); err != nil {
		t.Fatalf("cosign v3 sign: %v\n%s", err, out)
	}
}

func cosign3Attest(t *testing.T, cli *cosignCLI, keyPath, typ, predFile string, d name.Digest) {
	t.Helper()
	if out, err := cli.run("attest", "--key", keyPath, "--tlog-upload=false", "--use-signing-config=false", "-y", "--allow-http-registry",
		"--type", typ, "--predicate", predFile, d.String()); err != nil {
		t.Fatalf("cosign v3 attest: %v\n%s", err, out)
	}
}

// requireBundleLayout checks that d's signatures are where cosign v3 puts
// them on a registry without the referrers API: no .sig/.att tag, and an
// image index at the referrers tag sha256-<hex> that lists bundles.
func requireBundleLayout(t *testing.T, r *rig, d name.Digest) {
	t.Helper()
	ctx := context.Background()
	for _, suffix := range []string{sigSuffix, attSuffix} {
		if _, err := remote.Head(mustTag(t, d, suffix), r.reg.RemoteOptions(ctx)...); err == nil {
			t.Fatalf("a %s tag exists: the test would not exercise the bundle path", suffix)
		}
	}
	tag, err := r.reg.ParseReference(referrersTag(d))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(tag, r.reg.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatalf("no referrers tag %s (the registry's referrers API fallback): %v", tag, err)
	}
	// cosign v3 and Gantry list bundles with their artifactType; cosign
	// v2.6 with its empty config's.
	if desc.MediaType != types.OCIImageIndex || !strings.Contains(string(desc.Manifest), bundleMediaType) && !strings.Contains(string(desc.Manifest), emptyArtifactType) {
		t.Fatalf("referrers tag %s holds %s:\n%s", tag, desc.MediaType, desc.Manifest)
	}
}

// readBundles returns the raw bundles that refer to d.
func readBundles(t *testing.T, r *rig, d name.Digest, sigs bool) []*bundleEntry {
	t.Helper()
	bs := newBundleSource(r.reg, newPullers(r.reg), d)
	var got []*bundleEntry
	var err error
	if sigs {
		got, err = bs.signatures(context.Background())
	} else {
		got, err = bs.attestations(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// attachBundle stores bundle (JSON) as a referrer of d with cosign's own
// writer, as a copier or an attacker with push access would.
func attachBundle(t *testing.T, r *rig, d name.Digest, bundle []byte, predicateType string) {
	t.Helper()
	ctx := context.Background()
	if err := ociremote.WriteAttestationNewBundleFormat(d, bundle, predicateType,
		ociremote.WithRemoteOptions(r.reg.RemoteOptions(ctx)...), ociremote.WithNameOptions(r.reg.NameOptions(d.String())...)); err != nil {
		t.Fatal(err)
	}
}

// TestCosign3SignaturesVerify: what `cosign sign` and `cosign attest` v3
// store with their defaults (bundles as referrers, here under the
// referrers tag: this registry has no referrers API) verifies in Gantry,
// and each forgery is refused with its reason. Before bundles were read,
// every case was NoSignature / AttestationMissing.
func TestCosign3SignaturesVerify(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	const password = "v3"
	cli := newCosign3CLI(t, r, password)
	_, _, keyPath, _ := cosignKeyPair(t, dir, password)
	strangerDir := filepath.Join(dir, "stranger")
	if err := os.Mkdir(strangerDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, _, strangerKey, _ := cosignKeyPair(t, strangerDir, password)
	provenance := []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main"}}},"runDetails":{"builder":{"id":"https://gantry.dev/builder"}}}`)
	provFile := filepath.Join(dir, "provenance.json")
	critical := []byte(`{"invocation":{},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","version":"0.74.0","result":{"SchemaVersion":2,"Results":[{"Target":"img","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-0001","PkgName":"openssl","Severity":"CRITICAL"}]}]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`)
	vulnFile := filepath.Join(dir, "vuln.json")
	for f, b := range map[string][]byte{provFile: provenance, vulnFile: critical} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	onlySig := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\n")
	withProv := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn, branch: main}\n")
	noCritical := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: vuln, denySeverities: [CRITICAL]}\n")
	ctx := context.Background()
	verify := func(t *testing.T, p *Policy, d name.Digest) *Result {
		t.Helper()
		v, err := NewVerifier(p, r.reg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := v.Verify(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// One image signed and attested by cosign v3, shared by the first cases.
	signed := r.pushImage(r.uniqueRepo(), "v1")
	cosign3Sign(t, cli, keyPath, signed)
	requireBundleLayout(t, r, signed)

	t.Run("cosign v3 signature verifies", func(t *testing.T) {
		res := verify(t, onlySig, signed)
		if !res.Verified || strings.Join(res.Matched, ",") != "release" {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("cosign v3 attestation verifies", func(t *testing.T) {
		if res := verify(t, withProv, signed); res.Reason != AttestationMissing {
			t.Fatalf("before attest: %+v", res)
		}
		cosign3Attest(t, cli, keyPath, "slsaprovenance1", provFile, signed)
		if res := verify(t, withProv, signed); !res.Verified {
			t.Fatalf("after attest: %+v", res)
		}
	})
	t.Run("cosign v3 attestation read: vuln with a CRITICAL finding is rejected", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		cosign3Sign(t, cli, keyPath, d)
		cosign3Attest(t, cli, keyPath, "vuln", vulnFile, d)
		res := verify(t, noCritical, d)
		if res.Reason != AttestationRejected || !strings.Contains(res.Message, "CRITICAL CVE-2099-0001 in openssl") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("cosign v2 --new-bundle-format signature and attestation verify", func(t *testing.T) {
		v2 := newCosignCLI(t, r, password)
		d := r.pushImage(r.uniqueRepo(), "v1")
		flags := []string{"--key", keyPath, "--tlog-upload=false", "--new-bundle-format", "-y", "--allow-http-registry"}
		if out, err := v2.run(append(append([]string{"sign"}, flags...), d.String())...); err != nil {
			t.Fatalf("cosign v2 sign: %v\n%s", err, out)
		}
		if out, err := v2.run(append(append([]string{"attest", "--type", "slsaprovenance1", "--predicate", provFile}, flags...), d.String())...); err != nil {
			t.Fatalf("cosign v2 attest: %v\n%s", err, out)
		}
		requireBundleLayout(t, r, d)
		if res := verify(t, withProv, d); !res.Verified {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("an attestation alone is not a signature", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		cosign3Attest(t, cli, keyPath, "slsaprovenance1", provFile, d)
		if res := verify(t, onlySig, d); res.Verified || res.Reason != NoSignature {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		cosign3Sign(t, cli, strangerKey, d)
		if res := verify(t, onlySig, d); res.Reason != UntrustedKey || !strings.Contains(res.Message, "1 signature(s) found") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("attestation by an untrusted key", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		cosign3Sign(t, cli, keyPath, d)
		cosign3Attest(t, cli, strangerKey, "slsaprovenance1", provFile, d)
		if res := verify(t, withProv, d); res.Reason != AttestationMissing {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("bundle copied from another image", func(t *testing.T) {
		other := r.pushImage(signed.Context().String(), "other")
		for _, e := range readBundles(t, r, signed, true) {
			raw, err := e.b.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			attachBundle(t, r, other, raw, SignPredicateType)
		}
		res := verify(t, onlySig, other)
		if res.Reason != DigestMismatch || !strings.Contains(res.Message, signed.DigestStr()) {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("bundle whose statement was rewritten for another image", func(t *testing.T) {
		other := r.pushImage(signed.Context().String(), "forged")
		h, _ := v1.NewHash(other.DigestStr())
		for _, e := range readBundles(t, r, signed, true) {
			env := e.b.GetDsseEnvelope()
			env.Payload = []byte(strings.ReplaceAll(string(env.Payload), strings.TrimPrefix(signed.DigestStr(), "sha256:"), h.Hex))
			raw, err := e.b.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			attachBundle(t, r, other, raw, SignPredicateType)
		}
		if res := verify(t, onlySig, other); res.Reason != UntrustedKey {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("not a bundle where one is listed", func(t *testing.T) {
		d := r.pushImage(r.uniqueRepo(), "v1")
		attachBundle(t, r, d, []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`), SignPredicateType)
		if res := verify(t, onlySig, d); res.Reason != CorruptSignature {
			t.Fatalf("%+v", res)
		}
	})
}

// TestVerifyRoundTrips counts the registry requests and round trips of
// verifications in each format, through a proxy that holds every request
// for 100 ms (so that requests sent together are told apart from requests
// that waited for another, even when a busy machine starts one of them
// tens of milliseconds late): a new
// verifier's first verification (no /v2/ ping: the proxy's scheme and auth
// are known), then a second image of the same repository. The tag-based
// format costs what it did before bundles were read, once the repository
// is known to be signed that way; a bundle-only image lists its referrers
// beside the tag read, and once the registry is known to have no
// referrers API, reads the referrers tag straight away.
func TestVerifyRoundTrips(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	const password = "rt"
	cli := newCosign3CLI(t, r, password)
	_, _, keyPath, _ := cosignKeyPair(t, dir, password)
	provenance := []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main"}}},"runDetails":{"builder":{"id":"https://gantry.dev/builder"}}}`)
	predFile := filepath.Join(dir, "provenance.json")
	if err := os.WriteFile(predFile, provenance, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile = "file", keyPath }),
		r.reg, WithGetenv(func(k string) string { return map[string]string{"COSIGN_PASSWORD": password}[k] }))
	if err != nil {
		t.Fatal(err)
	}
	bundleSigner, err := New(context.Background(), signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile, c.Format = "file", keyPath, FormatBundle }),
		r.reg, WithGetenv(func(k string) string { return map[string]string{"COSIGN_PASSWORD": password}[k] }))
	if err != nil {
		t.Fatal(err)
	}
	onlySig := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\n")
	withProv := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn}\n")
	// Whatever the number of trusted keys: every signature found is
	// checked locally against each, so more keys cost no request.
	newTestKey(t, dir, "ops")
	newTestKey(t, dir, "security")
	threeKeys := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\n  - {name: ops, key: ops.pub}\n  - {name: security, key: security.pub}\n")
	ctx := context.Background()

	type cost struct{ requests, trips int }
	cases := []struct {
		name         string
		policy       *Policy
		setup        func(t *testing.T, d name.Digest)
		first, later cost
	}{
		{"tag-based signature", onlySig, func(t *testing.T, d name.Digest) {
			if _, err := s.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
		},
			cost{4, 2}, // .sig manifest and the referrers API (404), then its layer and the referrers tag (404)
			cost{2, 2}, // .sig manifest, then its layer
		},
		{"tag-based signature, 3 trusted keys", threeKeys, func(t *testing.T, d name.Digest) {
			if _, err := s.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
		}, cost{4, 2}, cost{2, 2}},
		{"tag-based signature and attestation", withProv, func(t *testing.T, d name.Digest) {
			if _, err := s.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Attest(ctx, d, "slsaprovenance1", provenance); err != nil {
				t.Fatal(err)
			}
		},
			cost{6, 4}, // as above, then .att manifest, then its layer
			cost{4, 4},
		},
		{"cosign v3 bundle signature", onlySig, func(t *testing.T, d name.Digest) {
			cosign3Sign(t, cli, keyPath, d)
		},
			cost{5, 4}, // .sig (404) and the referrers API (404), the referrers tag, the bundle's manifest, its layer
			cost{4, 3}, // .sig (404) and the referrers tag, the bundle's manifest, its layer
		},
		{"cosign v3 bundle signature, 3 trusted keys", threeKeys, func(t *testing.T, d name.Digest) {
			cosign3Sign(t, cli, keyPath, d)
		}, cost{5, 4}, cost{4, 3}},
		{"cosign v3 bundle signature, attestation present", onlySig, func(t *testing.T, d name.Digest) {
			cosign3Sign(t, cli, keyPath, d)
			cosign3Attest(t, cli, keyPath, "slsaprovenance1", predFile, d)
		},
			cost{7, 4}, // cosign v3's referrers tag has no annotations: both bundles are read, together
			cost{6, 3},
		},
		{"gantry bundle signature, attestation present", onlySig, func(t *testing.T, d name.Digest) {
			if _, err := bundleSigner.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
			if _, err := bundleSigner.Attest(ctx, d, "slsaprovenance1", provenance); err != nil {
				t.Fatal(err)
			}
		},
			cost{5, 4}, // the annotations on Gantry's referrers tag skip the attestation
			cost{4, 3},
		},
		{"cosign v3 bundle signature and attestation", withProv, func(t *testing.T, d name.Digest) {
			cosign3Sign(t, cli, keyPath, d)
			cosign3Attest(t, cli, keyPath, "slsaprovenance1", predFile, d)
		},
			cost{8, 5}, // as two above, then .att (404): the referrers list is read once
			cost{7, 4},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repo := r.uniqueRepo()
			d1, d2 := r.pushImage(repo, "v1"), r.pushImage(repo, "v2")
			tc.setup(t, d1)
			tc.setup(t, d2)
			cp, err := registryproxy.Start(r.env.Registry)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cp.Close() })
			cp.SetDelay(100 * time.Millisecond)
			preg, err := goci.New(config.Registry{Insecure: []string{cp.Host}, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			v, err := NewVerifier(tc.policy, preg)
			if err != nil {
				t.Fatal(err)
			}
			for _, step := range []struct {
				what string
				d    name.Digest
				want cost
			}{{"first verification of a new verifier", d1, tc.first}, {"then an image of the same repository", d2, tc.later}} {
				pd, err := preg.ParseDigest(cp.Host + "/" + step.d.RepositoryStr() + "@" + step.d.DigestStr())
				if err != nil {
					t.Fatal(err)
				}
				if res, err := v.Verify(ctx, pd); err != nil || !res.Verified {
					t.Fatalf("%s: %+v %v", step.what, res, err)
				}
				// The referrers listing of a tag-signed image may still
				// be in flight after Verify returns: wait for it to be
				// counted.
				reqs, trips := cp.Take(step.want.requests)
				t.Logf("%s: %d requests in %d round trips: %s", step.what, len(reqs), trips, strings.Join(reqs, ", "))
				if slices.Contains(reqs, "GET /v2/") {
					t.Fatalf("%s pinged the registry:\n%s", step.what, strings.Join(reqs, "\n"))
				}
				if got := (cost{len(reqs), trips}); got != step.want {
					t.Fatalf("%s made %d registry requests in %d round trips, want %d in %d:\n%s",
						step.what, got.requests, got.trips, step.want.requests, step.want.trips, strings.Join(reqs, "\n"))
				}
			}
		})
	}
}

// TestGantryBundlesInterop: what Gantry signs and attests in each format,
// cosign v3 verifies (and refuses with another key), and cosign v2 too
// (given a trusted root once bundles exist, as cosign v2.6 then reads
// them); signing again writes nothing.
func TestGantryBundlesInterop(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	const password = "gantry-bundle"
	v3 := newCosign3CLI(t, r, password)
	v2 := newCosignCLI(t, r, password)
	_, _, keyPath, pubPath := cosignKeyPair(t, dir, password)
	other := newTestKey(t, dir, "other")
	provenance := []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main"}}},"runDetails":{"builder":{"id":"https://gantry.dev/builder"}}}`)
	pol := writePolicy(t, dir, "identities:\n  - {name: release, key: cosign.pub}\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn, branch: main}\n")
	emptyRoot := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(emptyRoot, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newSigner := func(format string) *Signer {
		s, err := New(ctx, signerConfig(func(c *config.Signer) { c.KeySource, c.KeyFile, c.Format = "file", keyPath, format }),
			r.reg, WithGetenv(func(k string) string { return map[string]string{"COSIGN_PASSWORD": password}[k] }))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, format := range []string{FormatLegacy, FormatBundle, FormatBoth} {
		t.Run(format, func(t *testing.T) {
			s := newSigner(format)
			d := r.pushImage(r.uniqueRepo(), "v1")
			res, err := s.Sign(ctx, d)
			if err != nil || res.AlreadySigned || res.Format != format {
				t.Fatalf("%+v %v", res, err)
			}
			if _, err := s.Attest(ctx, d, "slsaprovenance1", provenance); err != nil {
				t.Fatal(err)
			}
			if format == FormatBundle {
				requireBundleLayout(t, r, d)
			}
			v, _ := NewVerifier(pol, r.reg)
			if res, err := v.Verify(ctx, d); err != nil || !res.Verified {
				t.Fatalf("gantry verify: %+v %v", res, err)
			}
			if out, err := v3.run("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err != nil {
				t.Fatalf("cosign v3 verify: %v\n%s", err, out)
			}
			out, err := v3.run("verify-attestation", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", d.String())
			if err != nil {
				t.Fatalf("cosign v3 verify-attestation: %v\n%s", err, out)
			}
			if out, err := v3.run("verify", "--key", other.pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err == nil {
				t.Fatalf("cosign v3 verified with an unrelated key:\n%s", out)
			}
			if format == FormatLegacy {
				// cosign v3 reads the tag-based format when there is no bundle.
				if out, err := v2.run("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err != nil {
					t.Fatalf("cosign v2 verify: %v\n%s", err, out)
				}
				return
			}
			// cosign v2.6 reads bundles too once one exists; offline, it
			// then wants a trusted root, which a key needs nothing from.
			if out, err := v2.run("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", d.String()); err == nil || !strings.Contains(out, "trusted root is required") {
				t.Fatalf("cosign v2 verify without a trusted root: err=%v\n%s", err, out)
			}
			if out, err := v2.run("verify", "--key", pubPath, "--insecure-ignore-tlog", "--allow-http-registry", "--trusted-root", emptyRoot, d.String()); err != nil {
				t.Fatalf("cosign v2 verify: %v\n%s", err, out)
			}
			again, err := s.Sign(ctx, d)
			if err != nil || !again.AlreadySigned {
				t.Fatalf("second sign: %+v %v", again, err)
			}
			if n := len(readBundles(t, r, d, true)); n != 1 {
				t.Fatalf("%d signature bundles after signing twice, want 1", n)
			}
		})
	}
}

// TestBundleAttestationReplaced: a rescan that finds a CRITICAL replaces
// the signer's earlier (clean) vuln attestation in the bundle format too,
// so the clean one cannot keep the image admitted. Before the replaced
// bundle was removed from the referrers, the verdict stayed Verified.
func TestBundleAttestationReplaced(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	k := newTestKey(t, dir, "k")
	vuln := func(sev string) []byte {
		return []byte(`{"invocation":{},"scanner":{"uri":"pkg:github/aquasecurity/trivy@0.74.0","version":"0.74.0","result":{"SchemaVersion":2,"Results":[{"Target":"img","Vulnerabilities":[{"VulnerabilityID":"CVE-2099-0001","PkgName":"openssl","Severity":"` + sev + `"}]}]}},"metadata":{"scanStartedOn":"2026-01-01T00:00:00Z","scanFinishedOn":"2026-01-01T00:00:01Z"}}`)
	}
	pol := writePolicy(t, dir, "identities:\n  - {name: k, key: k.pub}\nattestations:\n  - {type: vuln, denySeverities: [CRITICAL]}\n")
	ctx := context.Background()
	for _, format := range []string{FormatBundle, FormatBoth} {
		t.Run(format, func(t *testing.T) {
			s := r.signer(k)
			s.format = format
			d := r.pushImage(r.uniqueRepo(), "v1")
			if _, err := s.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
			v, _ := NewVerifier(pol, r.reg)
			if _, err := s.Attest(ctx, d, "vuln", vuln("LOW")); err != nil {
				t.Fatal(err)
			}
			if res, err := v.Verify(ctx, d); err != nil || !res.Verified {
				t.Fatalf("clean scan: %+v %v", res, err)
			}
			again, err := s.Attest(ctx, d, "vuln", vuln("LOW"))
			if err != nil || !again.AlreadyAttested {
				t.Fatalf("same predicate again: %+v %v", again, err)
			}
			if _, err := s.Attest(ctx, d, "vuln", vuln("CRITICAL")); err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(ctx, d)
			if err != nil || res.Reason != AttestationRejected {
				t.Fatalf("after a rescan with a CRITICAL finding: %+v %v", res, err)
			}
			if n := len(readBundles(t, r, d, false)); n != 1 {
				t.Fatalf("%d vuln bundles after the rescan, want 1", n)
			}
		})
	}
}
