// Package task is Flock's wire contract: the PollTask the dispatcher puts on
// the work queue, the HostRecord a poller publishes for every poll, and the
// NATS subject scheme. It is plain data with JSON encoding and imports
// neither NATS nor gosnmp, so any subscriber can depend on it.
//
// Every party builds and reads the messages here, so each rule has one
// place: SlotID and NowID format task ids, NewRecord begins every
// HostRecord (a poll's or an error record's), Undelivered is the record of
// a task given up at max_deliver, ErrHostBusy and ErrQueueFull are the work
// queue's refusals, and ReadHead reads a record's head (schema, task id,
// site, host, host key, start, duration, error) without its varbinds,
// refusing a schema it does not know.
//
// # Subjects
//
//	flock.tasks.<site>.<hostkey>     one PollTask per host and slot (JetStream work queue FLOCK_TASKS)
//	flock.results.<site>.<hostkey>   one HostRecord per poll (JetStream stream FLOCK_RESULTS, limits retention)
//
// A host key is the host's name lowercased, with '.', ':', '%', '/', '['
// and ']' mapped to '-', so that it is a single subject token:
// "core-sw1.example.net" becomes "core-sw1-example-net". Until sites exist
// the site is "default".
//
// # Addresses
//
// A task's address is a DNS name or an IP literal, IPv6 without brackets
// and with its zone if it has one; its port is the agent's; its transport
// (left out for plain udp) is udp4, udp6, tcp, tcp4 or tcp6, as package
// agent reads them from what users write (udp6://[::1]:161). Validate
// refuses anything else. A HostRecord repeats the three: what was polled.
// A task with a transport carries schema 2 (SchemaTransport): a poller that
// would ignore the field refuses it rather than poll over plain UDP.
//
// # Compatibility
//
// Both messages carry "schema" (currently 1). Adding a field is compatible and
// does not change the schema; renaming, removing or retyping a field does, and
// a reader must reject a schema it does not know (ErrUnknownSchema). The
// golden files in testdata/ freeze the encoding; regenerate them only with
// `go test ./internal/task -update` and review the diff.
//
// # Varbind values
//
// Each varbind is {"oid", "type", "value"}. OIDs are numeric with a leading
// dot, as net-snmp's -On prints them. The value keeps its SNMP type:
//
//	Integer                                  JSON number (int64)
//	Counter32 Gauge32 TimeTicks Uinteger32   JSON number (uint32)
//	Counter64                                JSON number, exact (uint64; decode it as such, never via float64)
//	OctetString Opaque BitString             JSON string: the text when it is printable UTF-8, otherwise
//	                                         lowercase hex with "encoding": "hex"
//	IpAddress ObjectIdentifier               JSON string
//	OpaqueFloat OpaqueDouble                 JSON number
//	Null NoSuchObject NoSuchInstance EndOfMibView   null
package task
