// Package layout checks the repository's rooms: which package may import
// which (the adapters' libraries only in their adapter, no adapter in the
// domain packages, no harness in the product). Its test is the check.
package layout
