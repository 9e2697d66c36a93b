// Package dispatch is the dispatcher's side of the work queue: which host is
// polled when (the Scheduler's slots, published as PollTasks), then what
// becomes of every HostRecord that answers one. A one-shot run (RunOnce) and
// continuous dispatching (Runner) share one record path: the record's head
// is read (never its varbinds), a record of an unknown schema is refused, the
// first record of each task is written to the sinks as the bytes that came,
// and the host's state is kept. It declares what it needs of the bus (Bus,
// RunBus) and imports no NATS package.
package dispatch
