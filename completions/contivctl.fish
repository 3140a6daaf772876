# fish completion for contivctl (generated: contivctl completion fish)
complete -c contivctl -f -n '__fish_use_subcommand' -a agent
complete -c contivctl -f -n '__fish_use_subcommand' -a completion
complete -c contivctl -f -n '__fish_use_subcommand' -a install
complete -c contivctl -f -n '__fish_use_subcommand' -a ipam
complete -c contivctl -f -n '__fish_use_subcommand' -a ksr
complete -c contivctl -f -n '__fish_use_subcommand' -a lab
complete -c contivctl -f -n '__fish_use_subcommand' -a nat
complete -c contivctl -f -n '__fish_use_subcommand' -a netstat
complete -c contivctl -f -n '__fish_use_subcommand' -a nodes
complete -c contivctl -f -n '__fish_use_subcommand' -a pods
complete -c contivctl -f -n '__fish_use_subcommand' -a policies
complete -c contivctl -f -n '__fish_use_subcommand' -a report
complete -c contivctl -f -n '__fish_use_subcommand' -a services
complete -c contivctl -f -n '__fish_use_subcommand' -a status
complete -c contivctl -f -n '__fish_use_subcommand' -a stn
complete -c contivctl -f -n '__fish_use_subcommand' -a trace
complete -c contivctl -f -n '__fish_use_subcommand' -a vpp
complete -c contivctl -n '__fish_use_subcommand' -l debug
complete -c contivctl -n '__fish_use_subcommand' -l help
complete -c contivctl -n '__fish_use_subcommand' -l socket
complete -c contivctl -n '__fish_use_subcommand' -l version
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a history
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a plan
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a resync
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a run
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a state
complete -c contivctl -f -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -a status
complete -c contivctl -n '__fish_seen_subcommand_from agent and not __fish_seen_subcommand_from history plan resync run state status' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from history' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from history' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from history' -l limit
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from history' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from history' -l output
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from plan' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from plan' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from plan' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from plan' -l output
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from resync' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from resync' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from resync' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from resync' -l output
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l config
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l dataplane
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l etcd
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l etcd-data-dir
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l log-level
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l metrics-address
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l mtu
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l node-ip
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l pod-cidr
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l socket
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l stn-dir
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l underlay-if
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l vpp-api-socket
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l vpp-stats-socket
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l vpp-uplink
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l vpp-uplink-cidr
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from run' -l vpp-uplink-gateway
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from state' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from state' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from state' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from state' -l output
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from state' -l prefix
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from status' -l help
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from status' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from status' -l node
complete -c contivctl -n '__fish_seen_subcommand_from agent and __fish_seen_subcommand_from status' -l output
complete -c contivctl -n '__fish_seen_subcommand_from completion' -l help
complete -c contivctl -f -n '__fish_seen_subcommand_from install and not __fish_seen_subcommand_from cni manifests node' -a cni
complete -c contivctl -f -n '__fish_seen_subcommand_from install and not __fish_seen_subcommand_from cni manifests node' -a manifests
complete -c contivctl -f -n '__fish_seen_subcommand_from install and not __fish_seen_subcommand_from cni manifests node' -a node
complete -c contivctl -n '__fish_seen_subcommand_from install and not __fish_seen_subcommand_from cni manifests node' -l help
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l agent-socket
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l bin-dir
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l chain
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l check
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l cni-version
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l conf-dir
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l dry-run
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l force
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l help
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l interpreter
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l output
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l plugin-dir
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l root
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l tuning-sysctl
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from cni' -l uninstall
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l dataplane
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l etcd
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l help
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l image
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l namespace
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l output
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l pod-cidr
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from manifests' -l service-cidr
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l chain
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l cni-version
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l config
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l dataplane
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l dry-run
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l force
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l help
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l node
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l output
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l root
complete -c contivctl -n '__fish_seen_subcommand_from install and __fish_seen_subcommand_from node' -l uninstall
complete -c contivctl -f -n '__fish_seen_subcommand_from ipam and not __fish_seen_subcommand_from gc' -a gc
complete -c contivctl -n '__fish_seen_subcommand_from ipam and not __fish_seen_subcommand_from gc' -l help
complete -c contivctl -n '__fish_seen_subcommand_from ipam and not __fish_seen_subcommand_from gc' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from ipam and not __fish_seen_subcommand_from gc' -l node
complete -c contivctl -n '__fish_seen_subcommand_from ipam and not __fish_seen_subcommand_from gc' -l output
complete -c contivctl -n '__fish_seen_subcommand_from ipam and __fish_seen_subcommand_from gc' -l help
complete -c contivctl -n '__fish_seen_subcommand_from ipam and __fish_seen_subcommand_from gc' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from ipam and __fish_seen_subcommand_from gc' -l node
complete -c contivctl -n '__fish_seen_subcommand_from ipam and __fish_seen_subcommand_from gc' -l output
complete -c contivctl -f -n '__fish_seen_subcommand_from ksr and not __fish_seen_subcommand_from run' -a run
complete -c contivctl -n '__fish_seen_subcommand_from ksr and not __fish_seen_subcommand_from run' -l help
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l etcd
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l health-address
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l help
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l id
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l kubeconfig
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l lease-ttl
complete -c contivctl -n '__fish_seen_subcommand_from ksr and __fish_seen_subcommand_from run' -l log-level
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a apply
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a delete
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a down
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a exec
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a kubeconfig
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a list
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a logs
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a probe
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a status
complete -c contivctl -f -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -a up
complete -c contivctl -n '__fish_seen_subcommand_from lab and not __fish_seen_subcommand_from apply delete down exec kubeconfig list logs probe status up' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from apply' -l filename
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from apply' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from apply' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from apply' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from apply' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from delete' -l filename
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from delete' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from delete' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from delete' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from delete' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from down' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from down' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from down' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from exec' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from exec' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from kubeconfig' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from kubeconfig' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from list' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from list' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from logs' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from logs' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from logs' -l tail
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l matrix
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l namespace
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l port
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l protocol
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from probe' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from status' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from status' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from status' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l dataplane
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l demo
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l help
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l kube-api
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l name
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l nodes
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l output
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l pod-cidr
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from lab and __fish_seen_subcommand_from up' -l underlay
complete -c contivctl -f -n '__fish_seen_subcommand_from nat and not __fish_seen_subcommand_from sessions' -a sessions
complete -c contivctl -n '__fish_seen_subcommand_from nat and not __fish_seen_subcommand_from sessions' -l help
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l all
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l help
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l node
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l output
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l pod
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l service
complete -c contivctl -n '__fish_seen_subcommand_from nat and __fish_seen_subcommand_from sessions' -l summary
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l help
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l namespace
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l node
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l output
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l sockets
complete -c contivctl -n '__fish_seen_subcommand_from netstat' -l watch
complete -c contivctl -n '__fish_seen_subcommand_from nodes' -l help
complete -c contivctl -n '__fish_seen_subcommand_from nodes' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from nodes' -l node
complete -c contivctl -n '__fish_seen_subcommand_from nodes' -l output
complete -c contivctl -n '__fish_seen_subcommand_from pods' -l help
complete -c contivctl -n '__fish_seen_subcommand_from pods' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from pods' -l node
complete -c contivctl -n '__fish_seen_subcommand_from pods' -l output
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l help
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l namespace
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l node
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l output
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l port
complete -c contivctl -n '__fish_seen_subcommand_from policies' -l protocol
complete -c contivctl -n '__fish_seen_subcommand_from report' -l help
complete -c contivctl -n '__fish_seen_subcommand_from report' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from report' -l node
complete -c contivctl -n '__fish_seen_subcommand_from report' -l output-file
complete -c contivctl -n '__fish_seen_subcommand_from report' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from services' -l help
complete -c contivctl -n '__fish_seen_subcommand_from services' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from services' -l namespace
complete -c contivctl -n '__fish_seen_subcommand_from services' -l node
complete -c contivctl -n '__fish_seen_subcommand_from services' -l output
complete -c contivctl -n '__fish_seen_subcommand_from status' -l help
complete -c contivctl -n '__fish_seen_subcommand_from status' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from status' -l node
complete -c contivctl -n '__fish_seen_subcommand_from status' -l output
complete -c contivctl -n '__fish_seen_subcommand_from status' -l timeout
complete -c contivctl -f -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -a confirm
complete -c contivctl -f -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -a restore
complete -c contivctl -f -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -a status
complete -c contivctl -f -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -a steal
complete -c contivctl -f -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -a watch
complete -c contivctl -n '__fish_seen_subcommand_from stn and not __fish_seen_subcommand_from confirm restore status steal watch' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from confirm' -l dir
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from confirm' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from confirm' -l output
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from restore' -l dir
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from restore' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from restore' -l output
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from restore' -l vpp-api-socket
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from status' -l dir
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from status' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from status' -l output
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l check
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l confirm-timeout
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l dataplane
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l dir
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l output
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from steal' -l vpp-api-socket
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from watch' -l dir
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from watch' -l help
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from watch' -l interval
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from watch' -l once
complete -c contivctl -n '__fish_seen_subcommand_from stn and __fish_seen_subcommand_from watch' -l vpp-api-socket
complete -c contivctl -f -n '__fish_seen_subcommand_from trace and not __fish_seen_subcommand_from pod-to-pod pod-to-service' -a pod-to-pod
complete -c contivctl -f -n '__fish_seen_subcommand_from trace and not __fish_seen_subcommand_from pod-to-pod pod-to-service' -a pod-to-service
complete -c contivctl -n '__fish_seen_subcommand_from trace and not __fish_seen_subcommand_from pod-to-pod pod-to-service' -l help
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l help
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l output
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l port
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l protocol
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-pod' -l timeout
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l help
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l output
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l port
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l protocol
complete -c contivctl -n '__fish_seen_subcommand_from trace and __fish_seen_subcommand_from pod-to-service' -l timeout
complete -c contivctl -f -n '__fish_seen_subcommand_from vpp and not __fish_seen_subcommand_from cli dump' -a cli
complete -c contivctl -f -n '__fish_seen_subcommand_from vpp and not __fish_seen_subcommand_from cli dump' -a dump
complete -c contivctl -n '__fish_seen_subcommand_from vpp and not __fish_seen_subcommand_from cli dump' -l help
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from cli' -l help
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from cli' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from cli' -l node
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from cli' -l output
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from dump' -l help
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from dump' -l lab
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from dump' -l node
complete -c contivctl -n '__fish_seen_subcommand_from vpp and __fish_seen_subcommand_from dump' -l output
