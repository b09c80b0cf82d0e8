package keys

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/tunnel-dev/tunnel/internal/fileread"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrivateKeyNeverPrints(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := k.Base64()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("key", "k", k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x %q", k, k, k, k, k, k), logs.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, k.UAPIHex()) {
			t.Fatalf("key material printed: %s", s)
		}
	}
}

func TestParseKeys(t *testing.T) {
	k, _ := GeneratePrivateKey()
	got, err := ParsePrivateKey(k.Base64() + "\n")
	if err != nil || got != k {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParsePublicKey(k.Public().String()); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"not base64!", "not base64"},
		{"AAAA", "decodes to 3 bytes"},
		{strings.Repeat("A", 43) + "=", "weak key"},
	}
	for _, b := range bad {
		if _, err := ParsePrivateKey(b.in); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("private %q: %v, want %q", b.in, err, b.want)
		}
		if _, err := ParsePublicKey(b.in); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("public %q: %v, want %q", b.in, err, b.want)
		}
	}
	// A private key's error never echoes the input.
	secret := strings.Repeat("Zm9v", 11)
	if _, err := ParsePrivateKey(secret); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("error echoes the key: %v", err)
	}
	// Low-order point: the shared secret would be zero.
	lowOrder := "4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA="
	if _, err := ParsePublicKey(lowOrder); !errors.Is(err, ErrWeakKey) {
		t.Errorf("low-order point accepted: %v", err)
	}
}

func TestKeyFileModes(t *testing.T) {
	dir := t.TempDir()
	pub, err := WriteKeyPair(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if priv.Public() != pub {
		t.Fatal("public key does not match the private key")
	}
	if got, err := LoadPublicKey(filepath.Join(dir, PublicKeyFile)); err != nil || got != pub {
		t.Fatalf("public.key: %v", err)
	}
	if _, err := WriteKeyPair(dir, false); !errors.Is(err, ErrExists) {
		t.Fatalf("overwrote a key: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, PrivateKeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // root's 0640 is accepted (kubelet's fsGroup mount); a user's is not
		if err := os.Chown(filepath.Join(dir, PrivateKeyFile), 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}
	_, err = LoadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if !errors.Is(err, ErrKeyFileMode) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key: %v", err)
	}
	// Through a symlink, as a mounted Secret is: the target's mode counts.
	link := filepath.Join(dir, "link.key")
	if err := os.Symlink(PrivateKeyFile, link); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(link); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("symlinked group-readable key: %v", err)
	}
}

// TestSecretFileOwnerAndMode: only the owner may read a secret file,
// except that a root-owned file may also be read by its group, as kubelet
// mounts a Secret for a pod with an fsGroup (root:fsGroup 0440).
func TestSecretFileOwnerAndMode(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		root bool // owned by root (else by uid 65532 when the test is root, or by the test's user)
		ok   bool
	}{
		{0o400, false, true},
		{0o600, false, true},
		{0o440, false, false},
		{0o640, false, false},
		{0o404, false, false},
		{0o400, true, true},
		{0o440, true, true},
		{0o640, true, true},
		{0o460, true, false}, // group may write
		{0o444, true, false}, // others may read
		{0o450, true, false}, // group may execute: not a plain secret
	} {
		t.Run(fmt.Sprintf("%04o root=%v", tc.mode, tc.root), func(t *testing.T) {
			euid := os.Geteuid()
			if tc.root && euid != 0 {
				t.Skip("needs root to make a root-owned file")
			}
			f := filepath.Join(t.TempDir(), "secret.key")
			if err := os.WriteFile(f, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if euid == 0 && !tc.root {
				if err := os.Chown(f, 65532, 65532); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(f, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := ReadSecretFile(f)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrKeyFileMode) {
				t.Errorf("accepted, or the wrong error: %v", err)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	pin, err := WriteIdentity(dir, "bunny", false)
	if err != nil {
		t.Fatal(err)
	}
	id, err := LoadIdentity(filepath.Join(dir, IdentityCertFile), filepath.Join(dir, IdentityKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if id.Pin() != pin || id.Name() != "bunny" {
		t.Fatalf("identity %s %s, want bunny %s", id.Name(), id.Pin(), pin)
	}
	if got, err := LoadCertificatePin(filepath.Join(dir, IdentityCertFile)); err != nil || got != pin {
		t.Fatalf("pin from cert: %v %v", got, err)
	}
	p2, err := ParsePin(pin.String())
	if err != nil || p2 != pin {
		t.Fatalf("pin round trip: %v", err)
	}
	for _, bad := range []string{"", "sha1/abc", "sha256/short", "sha256/" + strings.Repeat("!", 44)} {
		if _, err := ParsePin(bad); err == nil {
			t.Errorf("parsed pin %q", bad)
		}
	}
}

func FuzzParsePublicKey(f *testing.F) {
	k, _ := GeneratePrivateKey()
	f.Add(k.Public().String())
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePublicKey(s)
		if err == nil && p.IsZero() {
			t.Fatal("accepted the zero key")
		}
	})
}

func FuzzParsePin(f *testing.F) {
	f.Add("sha256/" + strings.Repeat("A", 43) + "=")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePin(s)
		if err == nil {
			if q, err := ParsePin(p.String()); err != nil || q != p {
				t.Fatal("pin does not round-trip")
			}
		}
	})
}

// No key, certificate or pin file is read past MaxFileSize: a huge file
// in its place is refused, naming it, before it is held in memory.
func TestKeyFilesAreCapped(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("A"), MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, load := range map[string]func() error{
		"private key": func() error { _, err := LoadPrivateKey(huge); return err },
		"public key":  func() error { _, err := LoadPublicKey(huge); return err },
		"identity":    func() error { _, err := LoadIdentity(huge, huge); return err },
		"pin":         func() error { _, err := LoadCertificatePin(huge); return err },
	} {
		err := load()
		if !errors.Is(err, fileread.ErrTooLarge) || !strings.Contains(err.Error(), huge) {
			t.Errorf("%s: err = %v, want the file named as too large", name, err)
		}
	}
}
