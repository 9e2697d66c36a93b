package config

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Version is an SNMP protocol version as written in config: "1", "2c" or "3".
type Version string

// SNMP versions.
const (
	Version1  Version = "1"
	Version2c Version = "2c"
	Version3  Version = "3"
)

// SNMPv3 security levels.
const (
	NoAuthNoPriv = "noAuthNoPriv"
	AuthNoPriv   = "authNoPriv"
	AuthPriv     = "authPriv"
)

// AuthProtocols and PrivProtocols are the names config accepts (any case).
var (
	AuthProtocols = []string{"MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"}
	PrivProtocols = []string{"DES", "AES", "AES192", "AES256", "AES192C", "AES256C"}
)

// Credential is a named profile of SNMP credentials. Pollers resolve it by
// name; only the name travels on the bus. Each secret comes from the config
// itself, from a file (the *_file keys, for Docker secrets), or from the
// environment variable FLOCK_CREDENTIALS_<NAME>_<KEY> (NAME upper-cased,
// other characters than letters and digits as '_'), which wins.
type Credential struct {
	Name      string  `mapstructure:"name"`
	Version   Version `mapstructure:"version"`
	Community Secret  `mapstructure:"community"`
	// CommunityFile holds the community (first line).
	CommunityFile string `mapstructure:"community_file"`

	Username           string `mapstructure:"username"`
	SecurityLevel      string `mapstructure:"security_level"` // noAuthNoPriv | authNoPriv | authPriv
	AuthProtocol       string `mapstructure:"auth_protocol"`  // MD5 SHA SHA224 SHA256 SHA384 SHA512
	AuthPassphrase     Secret `mapstructure:"auth_passphrase"`
	AuthPassphraseFile string `mapstructure:"auth_passphrase_file"`
	PrivProtocol       string `mapstructure:"priv_protocol"` // DES AES AES192 AES256 AES192C AES256C
	PrivPassphrase     Secret `mapstructure:"priv_passphrase"`
	PrivPassphraseFile string `mapstructure:"priv_passphrase_file"`
	ContextName        string `mapstructure:"context_name"`
	ContextEngineID    string `mapstructure:"context_engine_id"` // hex

	// Agent knobs for every host using this profile (a vendor's agents often
	// share their quirks); groups and hosts override them.
	MaxRepetitions         *int  `mapstructure:"max_repetitions"`
	MaxOids                *int  `mapstructure:"max_oids"`
	Bulk                   *bool `mapstructure:"bulk"`
	AllowNonIncreasingOIDs *bool `mapstructure:"allow_nonincreasing_oids"`
	UnconnectedUDP         *bool `mapstructure:"unconnected_udp"`
}

// knobs returns the profile's agent knobs as overrides.
func (cr *Credential) knobs() *overrides {
	return &overrides{MaxRepetitions: cr.MaxRepetitions, MaxOids: cr.MaxOids, Bulk: cr.Bulk,
		AllowNonIncreasingOIDs: cr.AllowNonIncreasingOIDs, UnconnectedUDP: cr.UnconnectedUDP}
}

// EnvName is the environment variable that overrides one of the profile's secrets.
func (cr *Credential) EnvName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(cr.Name) {
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return EnvPrefix + "_CREDENTIALS_" + b.String() + "_" + strings.ToUpper(key)
}

// ContextEngineIDBytes decodes the hex context engine id.
func (cr *Credential) ContextEngineIDBytes() string {
	b, _ := hex.DecodeString(cr.ContextEngineID)
	return string(b)
}

// resolveSecret fills *dst from the environment, or from file (relative to
// the config file's directory), or leaves the config's value. Exactly one
// of the value and the file may be given.
func resolveSecret(p *problems, key string, dst *Secret, file string, env string, baseDir string, getenv func(string) string) {
	if v := getenv(env); v != "" {
		*dst = Secret(v)
		return
	}
	if file == "" {
		return
	}
	if *dst != "" {
		p.add(key, "give either the value or the _file, not both")
		return
	}
	path := file
	if !filepath.IsAbs(path) && baseDir != "" {
		path = filepath.Join(baseDir, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.add(key+"_file", "cannot read %s: %v", path, errUnwrapPath(err))
		return
	}
	first, _, _ := strings.Cut(string(data), "\n")
	first = strings.TrimRight(first, "\r")
	if first == "" {
		p.add(key+"_file", "%s is empty", path)
		return
	}
	*dst = Secret(first)
}

func errUnwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func canonicalName(s string, names []string) (string, bool) {
	for _, n := range names {
		if strings.EqualFold(s, n) {
			return n, true
		}
	}
	return s, false
}

func (c *Config) validateCredentials(p *problems, getenv func(string) string) {
	seen := map[string]int{}
	baseDir := ""
	if c.File != "" {
		baseDir = filepath.Dir(c.File)
	}
	for i := range c.Credentials {
		cr := &c.Credentials[i]
		key := fmt.Sprintf("credentials[%d]", i)
		switch {
		case cr.Name == "":
			p.add(key+".name", "is empty")
		case strings.ContainsAny(cr.Name, " \t*>."):
			p.add(key+".name", "%q may not contain spaces, '.', '*' or '>'", cr.Name)
		}
		if j, dup := seen[cr.Name]; dup && cr.Name != "" {
			p.add(key+".name", "%q is already defined by credentials[%d]", cr.Name, j)
		}
		seen[cr.Name] = i
		resolveSecret(p, key+".community", &cr.Community, cr.CommunityFile, cr.EnvName("community"), baseDir, getenv)
		resolveSecret(p, key+".auth_passphrase", &cr.AuthPassphrase, cr.AuthPassphraseFile, cr.EnvName("auth_passphrase"), baseDir, getenv)
		resolveSecret(p, key+".priv_passphrase", &cr.PrivPassphrase, cr.PrivPassphraseFile, cr.EnvName("priv_passphrase"), baseDir, getenv)
		if k := cr.knobs(); k.MaxRepetitions != nil || k.MaxOids != nil {
			s := HostDefaults{MaxRepetitions: 1, MaxOids: 1}
			k.applyTo(&s)
			if k.MaxRepetitions != nil && (s.MaxRepetitions < 1 || s.MaxRepetitions > 1000) {
				p.add(key+".max_repetitions", "%d is out of range 1..1000", s.MaxRepetitions)
			}
			if k.MaxOids != nil && (s.MaxOids < 1 || s.MaxOids > 128) {
				p.add(key+".max_oids", "%d is out of range 1..128", s.MaxOids)
			}
		}
		switch cr.Version {
		case Version1, Version2c:
			if cr.Community == "" {
				p.add(key+".community", "is empty (SNMP v%s needs a community, or community_file, or %s)", cr.Version, cr.EnvName("community"))
			}
		case Version3:
			validateV3(p, key, cr)
		default:
			p.add(key+".version", "%q is not an SNMP version (want 1, 2c or 3)", cr.Version)
		}
	}
}

func validateV3(p *problems, key string, cr *Credential) {
	if cr.Username == "" {
		p.add(key+".username", "is empty (SNMPv3 needs a user name)")
	}
	if cr.SecurityLevel == "" { // infer from what is given
		switch {
		case cr.PrivProtocol != "" || cr.PrivPassphrase != "":
			cr.SecurityLevel = AuthPriv
		case cr.AuthProtocol != "" || cr.AuthPassphrase != "":
			cr.SecurityLevel = AuthNoPriv
		default:
			cr.SecurityLevel = NoAuthNoPriv
		}
	}
	level, ok := canonicalName(cr.SecurityLevel, []string{NoAuthNoPriv, AuthNoPriv, AuthPriv})
	if !ok {
		p.add(key+".security_level", "%q is not a security level (want noAuthNoPriv, authNoPriv or authPriv)", cr.SecurityLevel)
		return
	}
	cr.SecurityLevel = level
	if level == NoAuthNoPriv {
		return
	}
	if name, ok := canonicalName(cr.AuthProtocol, AuthProtocols); ok {
		cr.AuthProtocol = name
	} else if cr.AuthProtocol == "" {
		p.add(key+".auth_protocol", "is empty (%s needs one of %s)", level, strings.Join(AuthProtocols, ", "))
	} else {
		p.add(key+".auth_protocol", "%q is not an authentication protocol (want one of %s)", cr.AuthProtocol, strings.Join(AuthProtocols, ", "))
	}
	checkPassphrase(p, key+".auth_passphrase", cr.AuthPassphrase, cr.EnvName("auth_passphrase"))
	if level != AuthPriv {
		return
	}
	if name, ok := canonicalName(cr.PrivProtocol, PrivProtocols); ok {
		cr.PrivProtocol = name
	} else if cr.PrivProtocol == "" {
		p.add(key+".priv_protocol", "is empty (authPriv needs one of %s)", strings.Join(PrivProtocols, ", "))
	} else {
		p.add(key+".priv_protocol", "%q is not a privacy protocol (want one of %s)", cr.PrivProtocol, strings.Join(PrivProtocols, ", "))
	}
	checkPassphrase(p, key+".priv_passphrase", cr.PrivPassphrase, cr.EnvName("priv_passphrase"))
	if cr.ContextEngineID != "" {
		if _, err := hex.DecodeString(cr.ContextEngineID); err != nil {
			p.add(key+".context_engine_id", "%q is not hex", cr.ContextEngineID)
		}
	}
}

func checkPassphrase(p *problems, key string, s Secret, env string) {
	switch {
	case s == "":
		p.add(key, "is missing (give %s, %s_file or %s)", key[strings.LastIndex(key, ".")+1:], key[strings.LastIndex(key, ".")+1:], env)
	case len(s) < 8:
		p.add(key, "is shorter than 8 characters, which SNMPv3 (RFC 3414) does not allow")
	}
}
