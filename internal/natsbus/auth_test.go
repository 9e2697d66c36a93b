package natsbus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func startServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func TestConnectUserPassword(t *testing.T) {
	url := startServer(t, &server.Options{Users: []*server.User{{Username: "poller", Password: "s3cret-pw"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{User: "poller", Password: "s3cret-pw"}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	start := time.Now()
	_, err = Connect(ctx, ConnectOptions{URL: url, Auth: Auth{User: "poller", Password: "wrong-pw"}, Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), `as user "poller": the server refused`) || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("the password is in the error: %v", err)
	}
	if time.Since(start) > 8*time.Second {
		t.Fatalf("a refused password took %s to report: it should not wait for the timeout", time.Since(start))
	}
	if _, err := Connect(ctx, ConnectOptions{URL: url, Timeout: 10 * time.Second}); err == nil || !strings.Contains(err.Error(), "as no credentials: the server refused") {
		t.Fatalf("no credentials: %v", err)
	}
}

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all made here, and returns their paths.
func testPKI(t *testing.T) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "flock test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return
}

func TestConnectMutualTLS(t *testing.T) {
	ca, sc, sk, cc, ck := testPKI(t)
	tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: sc, KeyFile: sk, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	url := startServer(t, &server.Options{TLSConfig: tlsCfg, TLS: true, TLSVerify: true, TLSTimeout: 2})
	url = strings.Replace(url, "nats://", "tls://", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{CAFile: ca, CertFile: cc, KeyFile: ck}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !b.nc.TLSRequired() {
		t.Error("connected without TLS")
	}
	_ = b.Close()
	for name, auth := range map[string]Auth{
		"no CA":          {CertFile: cc, KeyFile: ck},
		"no client cert": {CAFile: ca},
	} {
		_, err := Connect(ctx, ConnectOptions{URL: url, Auth: auth, Timeout: 5 * time.Second})
		if err == nil {
			t.Fatalf("%s: connected", name)
		}
		t.Logf("%s: %v", name, err)
		if !strings.Contains(err.Error(), "connect to NATS at "+url) {
			t.Errorf("%s: error does not name the server: %v", name, err)
		}
	}
}

func TestConnectNKeySeedFile(t *testing.T) {
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	seedFile := filepath.Join(t.TempDir(), "poller.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{NKeySeedFile: seedFile}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	if err := os.WriteFile(seedFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Connect(ctx, ConnectOptions{URL: url, Auth: Auth{NKeySeedFile: seedFile}, Timeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "as the nkey in "+seedFile+": the server refused") || strings.Contains(err.Error(), string(otherSeed)) {
		t.Fatalf("unknown nkey: %v", err)
	}
	if _, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{NKeySeedFile: filepath.Join(t.TempDir(), "missing.nk")}}); err == nil ||
		!strings.Contains(err.Error(), "nats.nkey_seed_file") {
		t.Fatalf("missing seed file: %v", err)
	}
}

// A .creds file (user JWT and seed) against a server in operator mode, the
// operator, account and user all made here.
func TestConnectCredsFile(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, _ := jwt.DecodeOperatorClaims(opJWT)
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := nkeys.CreateUser()
	usrPub, _ := usr.PublicKey()
	uc := jwt.NewUserClaims(usrPub)
	uc.IssuerAccount = accPub
	usrJWT, err := uc.Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := usr.Seed()
	creds, err := jwt.FormatUserConfig(usrJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(t.TempDir(), "poller.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{CredsFile: credsFile}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	// A user of an account the server does not know is refused.
	stranger, _ := nkeys.CreateAccount()
	sc := jwt.NewUserClaims(usrPub)
	strangerJWT, _ := sc.Encode(stranger)
	bad, _ := jwt.FormatUserConfig(strangerJWT, seed)
	if err := os.WriteFile(credsFile, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, ConnectOptions{URL: url, Auth: Auth{CredsFile: credsFile}, Timeout: 10 * time.Second}); err == nil ||
		!strings.Contains(err.Error(), "as the credentials in "+credsFile) {
		t.Fatalf("creds of an unknown account: %v", err)
	}
}
