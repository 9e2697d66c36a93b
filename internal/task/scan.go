package task

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// scanner reads the plain JSON that Flock itself writes, without
// reflection, for the decoders that run once per poll (a task on the
// poller, a record's head on the dispatcher). Each method reports false on
// anything outside that plain form; the caller then falls back to
// encoding/json, whose answer is the reference.
type scanner struct {
	b []byte
	i int
}

func (d *scanner) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *scanner) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *scanner) eat(c byte) bool {
	if d.peek() == c {
		d.i++
		return true
	}
	return false
}

// object reads {"key": value, ...}, calling field with each key positioned
// at its value.
func (d *scanner) object(field func(key []byte) bool) bool {
	if !d.eat('{') {
		return false
	}
	if d.eat('}') {
		return true
	}
	for {
		key, ok := d.rawString()
		if !ok || !d.eat(':') || !field(key) {
			return false
		}
		if d.eat('}') {
			return true
		}
		if !d.eat(',') {
			return false
		}
	}
}

// rawString returns the bytes of a string with no escapes, control
// characters or invalid UTF-8 (encoding/json would rewrite those).
func (d *scanner) rawString() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start, ascii := d.i, true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, ascii || utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return nil, false
}

func (d *scanner) str(dst *string) bool {
	s, ok := d.rawString()
	if ok {
		*dst = string(s)
	}
	return ok
}

// digits returns a JSON integer's text: an optional minus, then 0 or a
// digit string without leading zeros, and no fraction or exponent.
func (d *scanner) digits() (string, bool) {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	first := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i == first || (d.b[first] == '0' && d.i-first > 1) {
		return "", false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return "", false
	}
	return string(d.b[start:d.i]), true
}

func (d *scanner) int64(dst *int64) bool {
	s, ok := d.digits()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	*dst = n
	return err == nil
}

func (d *scanner) int(dst *int) bool {
	var n int64
	if !d.int64(&n) || int64(int(n)) != n {
		return false
	}
	*dst = int(n)
	return true
}

func (d *scanner) uint16(dst *uint16) bool {
	s, ok := d.digits()
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	*dst = uint16(n)
	return err == nil
}

func (d *scanner) bool(dst *bool) bool {
	d.ws()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		*dst, d.i = true, d.i+4
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		*dst, d.i = false, d.i+5
	default:
		return false
	}
	return true
}

// time decodes with time.Time's own UnmarshalJSON, as encoding/json does.
func (d *scanner) time(dst *time.Time) bool {
	d.ws()
	start := d.i
	if _, ok := d.rawString(); !ok {
		return false
	}
	return dst.UnmarshalJSON(d.b[start:d.i]) == nil
}

func (d *scanner) strings(dst *[]string) bool {
	if !d.eat('[') {
		return false
	}
	out := []string{} // [] decodes to an empty slice, not nil, as with encoding/json
	if !d.eat(']') {
		for {
			var s string
			if !d.str(&s) {
				return false
			}
			out = append(out, s)
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

// skip passes over one JSON value of any kind, checking its grammar as
// encoding/json does; strings are not read, so they may hold escapes and
// any bytes but control characters. Deep nesting is left to encoding/json.
func (d *scanner) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	switch d.peek() {
	case '"':
		return d.skipString()
	case '{':
		d.i++
		if d.eat('}') {
			return true
		}
		for {
			if d.peek() != '"' || !d.skipString() || !d.eat(':') || !d.skip(depth+1) {
				return false
			}
			if d.eat('}') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case '[':
		d.i++
		if d.eat(']') {
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			if d.eat(']') {
				return true
			}
			if !d.eat(',') {
				return false
			}
		}
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	}
	_, ok := d.number()
	return ok
}

func (d *scanner) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// skipString passes over a string (at its opening quote), escapes included.
func (d *scanner) skipString() bool {
	if !d.eat('"') {
		return false
	}
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if d.i+1 >= len(d.b) {
				return false
			}
			switch d.b[d.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i += 2
			case 'u':
				if d.i+6 > len(d.b) {
					return false
				}
				for _, h := range d.b[d.i+2 : d.i+6] {
					if !isHex(h) {
						return false
					}
				}
				d.i += 6
			default:
				return false
			}
		default:
			d.i++
		}
	}
	return false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// number returns a JSON number's text, fraction and exponent allowed.
func (d *scanner) number() ([]byte, bool) {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	first := d.i
	if n := digits(); n == 0 || (d.b[first] == '0' && n > 1) {
		return nil, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return nil, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return nil, false
		}
	}
	return d.b[start:d.i], true
}

// float64 reads a number as encoding/json does into a float64.
func (d *scanner) float64(dst *float64) bool {
	s, ok := d.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	*dst = f
	return err == nil
}

// text reads a string of any content: plain strings directly, those with
// escapes or invalid UTF-8 through encoding/json, which decides what they
// mean.
func (d *scanner) text(dst *string) bool {
	d.ws()
	start := d.i
	if s, ok := d.rawString(); ok {
		*dst = string(s)
		return true
	}
	d.i = start
	if !d.skipString() {
		return false
	}
	return json.Unmarshal(d.b[start:d.i], dst) == nil
}
