// Package natsbus is Flock's adapter to NATS JetStream, the one product
// package that imports the NATS client (nats.go) or server (nats-server),
// as harness/layout's test checks: it connects (or embeds a server),
// creates the streams, consumers and key-value buckets, publishes tasks
// and records, and delivers them to whoever consumes them. It decides
// nothing of Flock's own: what a delivered task or a collected record
// means is internal/poller's and internal/dispatch's, through the small
// interfaces they declare, which this package's types satisfy (TaskMsg,
// Request, Bus).
//
// One file per noun, as in nats.go's jetstream package: conn (the
// connection, its authentication), embedded (an in-process server), stream
// (the streams, the task consumer's settings, the queue's state), consumer
// (taking tasks, reading records), message (a delivered task, a request),
// publish (tasks, records), advisory (tasks that exhausted their
// deliveries), kv (buckets), devices (what devices taught the pollers),
// heartbeat, request (poll now, request and reply).
package natsbus
