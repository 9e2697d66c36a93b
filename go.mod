module github.com/flock-snmp/flock

go 1.26
