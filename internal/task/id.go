package task

import (
	"strconv"
	"time"
)

// SlotID is the id of the task of host hostKey of site for the slot that
// starts at slot: "<site>.<hostkey>@<slot in Unix milliseconds>". Every
// dispatcher computes the same id for the same host and slot, so a task
// published twice is stored once and its record is written once.
func SlotID(site, hostKey string, slot time.Time) string {
	return appendID(site, hostKey, "@", slot.UnixMilli())
}

// NowID is the id of a poll asked for outside the schedule (poll now):
// "<site>.<hostkey>@now-<Unix nanoseconds>", never the id of a slot.
func NowID(site, hostKey string, now time.Time) string {
	return appendID(site, hostKey, "@now-", now.UnixNano())
}

func appendID(site, hostKey, sep string, n int64) string {
	b := make([]byte, 0, len(site)+1+len(hostKey)+len(sep)+20)
	b = append(append(append(append(b, site...), '.'), hostKey...), sep...)
	return string(strconv.AppendInt(b, n, 10))
}

// HostStateKey is the key of a host in the key-value buckets that hold
// what is known per host (flock_hosts, flock_devices): "<site>.<hostkey>".
func HostStateKey(site, hostKey string) string { return site + "." + hostKey }
