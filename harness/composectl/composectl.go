// Package composectl drives docker compose and docker for the harness's
// compose tests: one project's commands, its containers, their ids.
package composectl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Command is how to run compose here: docker-compose (v1.29) when it is on
// PATH, else the docker CLI's compose plugin.
func Command() []string {
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	return []string{"docker", "compose"}
}

// Project is one compose project.
type Project struct {
	Command []string // Command()
	File    string   // the compose file; "" for docker-compose.yml
	Name    string   // the project's name (-p)
	Env     []string // added to this process's environment for compose
}

// Compose runs compose with args on the project and returns its output.
func (p *Project) Compose(ctx context.Context, args ...string) (string, error) {
	full := append([]string{}, p.Command[1:]...)
	if p.File != "" {
		full = append(full, "-f", p.File)
	}
	full = append(append(full, "-p", p.Name), args...)
	cmd := exec.CommandContext(ctx, p.Command[0], full...)
	cmd.Env = append(os.Environ(), p.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", p.Command[0], strings.Join(full, " "), err, out)
	}
	return string(out), nil
}

// Docker runs docker with args and returns its standard output; its
// standard error is in the error.
func Docker(ctx context.Context, args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Containers lists the ids of the containers of a service of the project
// (of every service when service is ""), running or not.
func (p *Project) Containers(ctx context.Context, service string) ([]string, error) {
	args := []string{"ps", "-aq", "--filter", "label=com.docker.compose.project=" + p.Name}
	if service != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+service)
	}
	out, err := Docker(ctx, args...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Container is the id of the one container of a service.
func (p *Project) Container(ctx context.Context, service string) (string, error) {
	ids, err := p.Containers(ctx, service)
	if err != nil {
		return "", err
	}
	if len(ids) != 1 {
		return "", fmt.Errorf("service %s: %d containers, want 1", service, len(ids))
	}
	return ids[0], nil
}
