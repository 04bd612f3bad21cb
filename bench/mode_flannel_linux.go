package bench

import (
	"context"
	"errors"
)

var flannelMode = Mode{
	Name:   "flannel",
	About:  "real flanneld, udp backend, against an embedded etcd (needs --flanneld PATH)",
	PodMTU: weftTunMTU,
	Available: func(env *Env) error {
		if env.Flanneld == "" {
			return errors.New("no --flanneld PATH given")
		}
		return executable(env.Flanneld, "--flanneld")
	},
	Setup: func(ctx context.Context, env *Env, dp *Dataplane) error {
		return errors.New("flannel mode: not implemented yet")
	},
}
