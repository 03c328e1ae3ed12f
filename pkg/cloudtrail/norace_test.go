//go:build !race

package cloudtrail

const raceDetector = false
