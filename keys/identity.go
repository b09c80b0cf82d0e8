package keys

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/tunnel-dev/tunnel/internal/fileread"
	"math/big"
	"strings"
	"time"
)

// Pin identifies a QUIC peer by the SHA-256 of its certificate's
// SubjectPublicKeyInfo, written "sha256/<base64>". Certificates can be
// re-issued for the same key without changing the pin; a new key is a new
// pin.
type Pin [sha256.Size]byte

const pinPrefix = "sha256/"

// String is the "sha256/<base64>" form.
func (p Pin) String() string { return pinPrefix + base64.StdEncoding.EncodeToString(p[:]) }

// MarshalText writes the "sha256/<base64>" form.
func (p Pin) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses the "sha256/<base64>" form.
func (p *Pin) UnmarshalText(b []byte) error {
	q, err := ParsePin(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePin parses "sha256/<base64>".
func ParsePin(s string) (Pin, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return Pin{}, fmt.Errorf("parsing pin %q: want sha256/<base64 of the SHA-256 of the public key>", abbreviate(s))
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(b) != sha256.Size {
		return Pin{}, fmt.Errorf("parsing pin %q: want 44 base64 characters after sha256/", abbreviate(s))
	}
	var p Pin
	copy(p[:], b)
	return p, nil
}

// PinOf returns the pin of a certificate's public key.
func PinOf(cert *x509.Certificate) Pin {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// Identity is a QUIC (TLS 1.3) identity: a private key and a self-signed
// certificate carrying its public key. Relay pins workers by Pin, and
// workers pin relay the same way, so no CA is involved.
type Identity struct {
	Certificate tls.Certificate
	Leaf        *x509.Certificate
}

// Pin is the identity's pin.
func (id Identity) Pin() Pin { return PinOf(id.Leaf) }

// Name is the certificate's common name (the worker or server name).
func (id Identity) Name() string { return id.Leaf.Subject.CommonName }

// IdentityValidity is how long generated certificates claim to be valid.
// Pinning ignores dates, but TLS libraries check them.
const IdentityValidity = 100 * 365 * 24 * time.Hour

// GenerateIdentity makes an Ed25519 key and a self-signed certificate named
// name. It returns the PEM certificate and the PEM (PKCS#8) private key.
func GenerateIdentity(name string) (certPEM, keyPEM []byte, err error) {
	if name == "" {
		return nil, nil, errors.New("generating identity: empty name")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating identity key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("generating certificate serial: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now,
		NotAfter:              now.Add(IdentityValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding identity key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	return certPEM, keyPEM, nil
}

// ParseIdentity builds an Identity from PEM blocks.
func ParseIdentity(certPEM, keyPEM []byte) (Identity, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls errors name the problem, never the key bytes.
		return Identity{}, fmt.Errorf("parsing identity: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return Identity{}, fmt.Errorf("parsing identity certificate: %w", err)
	}
	switch leaf.PublicKey.(type) {
	case ed25519.PublicKey:
	default:
		if _, ok := cert.PrivateKey.(crypto.Signer); !ok {
			return Identity{}, errors.New("parsing identity: the private key cannot sign")
		}
	}
	cert.Leaf = leaf
	return Identity{Certificate: cert, Leaf: leaf}, nil
}

// LoadIdentity reads an identity from a certificate file and a private key
// file; the key file must not be readable by group or others.
func LoadIdentity(certFile, keyFile string) (Identity, error) {
	certPEM, err := fileread.Read(certFile, MaxFileSize)
	if err != nil {
		return Identity{}, fmt.Errorf("reading identity certificate: %w", err)
	}
	keyPEM, err := ReadSecretFile(keyFile)
	if err != nil {
		return Identity{}, err
	}
	id, err := ParseIdentity(certPEM, keyPEM)
	if err != nil {
		return Identity{}, fmt.Errorf("%s, %s: %w", certFile, keyFile, err)
	}
	return id, nil
}

// LoadCertificatePin reads a PEM certificate file and returns its pin.
func LoadCertificatePin(certFile string) (Pin, error) {
	b, err := fileread.Read(certFile, MaxFileSize)
	if err != nil {
		return Pin{}, fmt.Errorf("reading certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return Pin{}, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return Pin{}, fmt.Errorf("%s: parsing certificate: %w", certFile, err)
	}
	return PinOf(c), nil
}
