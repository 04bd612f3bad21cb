// Package kube takes a host's subnet and its peers from Kubernetes Nodes, as
// flanneld does with --kube-subnet-mgr, so that flanneld and weftd nodes
// share one cluster.
//
// In this mode there is no lease to acquire: the subnet is the Node's
// spec.podCIDR, assigned by the controller manager. The host publishes
// itself on its Node with flannel's annotations (public-ip, backend-type,
// backend-data, kube-subnet-manager) and the NetworkUnavailable=False
// condition, and learns its peers from every Node whose kube-subnet-manager
// annotation is "true", through an informer (list, then watch).
//
// A typical host (what cmd/weftd does):
//
//	conf, err := kube.ReadNetConf(path)               // flannel's net-conf.json
//	c, err := kube.Connect(kube.Options{...})         // in-cluster or kubeconfig
//	subnet, err := c.WaitSubnet(ctx, conf.Network)    // until the Node has a podCIDR
//	ip, err := c.Publish(ctx, publicIP)               // the annotations
//	err = c.MarkNetworkAvailable(ctx)                 // the condition
//	for b := range c.WatchRoutes(ctx) { apply(b.Routes) } // the full table first
//
// The package reports route changes in lease's types; it never programs a
// dataplane itself.
package kube
