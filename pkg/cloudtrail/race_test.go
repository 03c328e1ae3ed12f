//go:build race

package cloudtrail

// raceDetector: this test binary runs under the race detector, which changes what is
// allocated and drops some of what is put in a sync.Pool: the tests that count on
// either skip.
const raceDetector = true
