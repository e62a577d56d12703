// Package integration holds the recipes of docs/clients.md: for each client
// library that makes its own sockets or looks names up on its own, the few
// lines that keep both its connections and its lookups on one interface.
//
// The recipes are the code that the lab tests of this module run, and a test
// checks that docs/clients.md quotes them as they are. Each takes a
// [bindtodev.Dialer] made by [NewDialer], whose Resolver sends the lookups
// through the same interface as the connections.
package integration
