package task

// decodeTaskFast decodes a PollTask written the way the dispatcher writes
// it, without reflection: the poller decodes one per poll. It reports false
// for anything outside that plain form (an unknown or differently cased
// key, null, an escape in a string, a fraction or exponent in a number,
// invalid UTF-8, ...), and the caller then decodes with encoding/json,
// whose result is the reference: FuzzDecodeTask checks that whatever this
// accepts, encoding/json decodes to the same task.
func decodeTaskFast(data []byte, t *PollTask) bool {
	d := scanner{b: data}
	if !d.object(func(key []byte) bool { return d.taskField(key, t) }) {
		return false
	}
	d.ws()
	return d.i == len(d.b)
}

func (d *scanner) tables(dst *[]Table) bool {
	if !d.eat('[') {
		return false
	}
	out := []Table{}
	if !d.eat(']') {
		for {
			var tb Table
			ok := d.object(func(key []byte) bool {
				switch string(key) {
				case "root":
					return d.str(&tb.Root)
				case "columns":
					return d.strings(&tb.Columns)
				}
				return false
			})
			if !ok {
				return false
			}
			out = append(out, tb)
			if d.eat(']') {
				break
			}
			if !d.eat(',') {
				return false
			}
		}
	}
	*dst = out
	return true
}

func (d *scanner) taskField(key []byte, t *PollTask) bool {
	switch string(key) {
	case "schema":
		return d.int(&t.Schema)
	case "id":
		return d.str(&t.ID)
	case "site":
		return d.str(&t.Site)
	case "host":
		return d.str(&t.Host)
	case "host_key":
		return d.str(&t.HostKey)
	case "address":
		return d.str(&t.Address)
	case "port":
		return d.uint16(&t.Port)
	case "transport":
		return d.str(&t.Transport)
	case "credentials":
		return d.str(&t.Credentials)
	case "get":
		return d.strings(&t.Get)
	case "walk":
		return d.strings(&t.Walk)
	case "tables":
		return d.tables(&t.Tables)
	case "timeout_ms":
		return d.int64(&t.TimeoutMS)
	case "poll_timeout_ms":
		return d.int64(&t.PollTimeoutMS)
	case "retries":
		return d.int(&t.Retries)
	case "max_oids":
		return d.int(&t.MaxOids)
	case "max_repetitions":
		return d.int(&t.MaxRepetitions)
	case "no_bulk":
		return d.bool(&t.NoBulk)
	case "allow_nonincreasing_oids":
		return d.bool(&t.AllowNonIncreasingOIDs)
	case "unconnected_udp":
		return d.bool(&t.UnconnectedUDP)
	case "max_outstanding":
		return d.int(&t.MaxOutstanding)
	case "scheduled_at":
		return d.time(&t.ScheduledAt)
	case "deadline":
		return d.time(&t.Deadline)
	}
	return false
}

// AppendJSON appends t as JSON, field for field what encoding/json writes
// for a PollTask, without reflection (the dispatcher encodes one task per
// poll). Two differences no reader sees: no HTML escaping of <, > and &,
// and times in UTC (the same instants).
func (t *PollTask) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":`...)
	b = appendInt(b, int64(t.Schema))
	b = append(b, `,"id":`...)
	b = appendString(b, t.ID)
	b = append(b, `,"site":`...)
	b = appendString(b, t.Site)
	b = append(b, `,"host":`...)
	b = appendString(b, t.Host)
	b = append(b, `,"host_key":`...)
	b = appendString(b, t.HostKey)
	b = append(b, `,"address":`...)
	b = appendString(b, t.Address)
	b = append(b, `,"port":`...)
	b = appendUint(b, uint64(t.Port))
	if t.Transport != "" {
		b = append(b, `,"transport":`...)
		b = appendString(b, t.Transport)
	}
	b = append(b, `,"credentials":`...)
	b = appendString(b, t.Credentials)
	if len(t.Get) > 0 {
		b = appendStrings(append(b, `,"get":`...), t.Get)
	}
	if len(t.Walk) > 0 {
		b = appendStrings(append(b, `,"walk":`...), t.Walk)
	}
	if len(t.Tables) > 0 {
		b = append(b, `,"tables":[`...)
		for i := range t.Tables {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"root":`...)
			b = appendString(b, t.Tables[i].Root)
			b = append(b, `,"columns":`...)
			if t.Tables[i].Columns == nil {
				b = append(b, "null"...)
			} else {
				b = appendStrings(b, t.Tables[i].Columns)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"timeout_ms":`...)
	b = appendInt(b, t.TimeoutMS)
	b = append(b, `,"poll_timeout_ms":`...)
	b = appendInt(b, t.PollTimeoutMS)
	b = append(b, `,"retries":`...)
	b = appendInt(b, int64(t.Retries))
	b = append(b, `,"max_oids":`...)
	b = appendInt(b, int64(t.MaxOids))
	b = append(b, `,"max_repetitions":`...)
	b = appendInt(b, int64(t.MaxRepetitions))
	if t.NoBulk {
		b = append(b, `,"no_bulk":true`...)
	}
	if t.AllowNonIncreasingOIDs {
		b = append(b, `,"allow_nonincreasing_oids":true`...)
	}
	if t.UnconnectedUDP {
		b = append(b, `,"unconnected_udp":true`...)
	}
	if t.MaxOutstanding != 0 {
		b = append(b, `,"max_outstanding":`...)
		b = appendInt(b, int64(t.MaxOutstanding))
	}
	b = append(b, `,"scheduled_at":`...)
	b = appendTime(b, t.ScheduledAt)
	b = append(b, `,"deadline":`...)
	b = appendTime(b, t.Deadline)
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}
