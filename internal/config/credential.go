package config

// Version is an SNMP protocol version as written in config: "1", "2c" or "3".
type Version string

// SNMP versions.
const (
	Version1  Version = "1"
	Version2c Version = "2c"
	Version3  Version = "3"
)

// Credential is a named profile of SNMP credentials. Pollers resolve it by
// name; only the name travels on the bus.
type Credential struct {
	Name      string  `mapstructure:"name"`
	Version   Version `mapstructure:"version"`
	Community Secret  `mapstructure:"community"`
}
