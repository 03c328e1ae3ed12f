package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	for name, tc := range map[string]struct {
		args           []string
		code           int
		stdout, stderr string // substrings; "" where the stream must be empty
	}{
		"version":         {[]string{"version"}, 0, "outsider ", ""},
		"--version":       {[]string{"--version"}, 0, "outsider ", ""},
		"help":            {[]string{"help"}, 0, "Commands:", ""},
		"-h":              {[]string{"-h"}, 0, "replay", ""},
		"none":            {nil, 2, "", "Commands:"},
		"unknown":         {[]string{"reply"}, 2, "", `unknown command "reply"`},
		"replay -h":       {[]string{"replay", "-h"}, 0, "Usage: outsider replay", ""},
		"drill -h":        {[]string{"drill", "-h"}, 0, "Usage: outsider drill", ""},
		"suppress -h":     {[]string{"suppress", "-h"}, 0, "Usage: outsider suppress", ""},
		"suppress bad":    {[]string{"suppress", "cidr=10.1.2.0/23"}, 2, "", "outsider suppress: suppress: \"cidr=10.1.2.0/23\""},
		"suppress none":   {[]string{"suppress"}, 2, "", "no KIND=VALUE"},
		"drill bad flag":  {[]string{"drill", "--fn", "x"}, 2, "", "outsider drill: flag provided but not defined: -fn"},
		"replay bad flag": {[]string{"replay", "--colour", "x"}, 2, "", "outsider replay: flag provided but not defined: -colour"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, nil, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, s := range []struct {
				name, got, want string
			}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if s.want == "" && s.got != "" || !strings.Contains(s.got, s.want) {
					t.Errorf("%s = %q, want it to hold %q", s.name, s.got, s.want)
				}
			}
			// An error is said once, not around the usage.
			if strings.Count(stderr.String(), "not defined") > 1 || strings.Contains(stderr.String(), "Usage:") && tc.code == 2 && tc.args != nil {
				t.Errorf("stderr repeats itself: %q", stderr.String())
			}
		})
	}
}
