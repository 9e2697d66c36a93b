module github.com/flock-snmp/flock

go 1.26

require github.com/gosnmp/gosnmp v1.47.0 // indirect
