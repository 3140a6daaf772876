#compdef contivctl
# zsh completion for contivctl (generated: contivctl completion zsh)
autoload -U bashcompinit && bashcompinit
# bash completion for contivctl (generated: contivctl completion bash)
_contivctl() {
    local cur path i w
    cur="${COMP_WORDS[COMP_CWORD]}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        case "$w" in -*) continue ;; esac
        case " $(_contivctl_subs "$path") " in *" $w "*) path="${path:+$path }$w" ;; esac
    done
    COMPREPLY=($(compgen -W "$(_contivctl_subs "$path") $(_contivctl_opts "$path")" -- "$cur"))
}
_contivctl_subs() {
    case "$1" in
        "") echo "agent completion install ipam ksr lab nat netstat nodes pods policies report services status stn trace vpp" ;;
        "agent") echo "history plan resync run state status" ;;
        "install") echo "cni manifests node" ;;
        "ipam") echo "gc" ;;
        "ksr") echo "run" ;;
        "lab") echo "apply delete down exec kubeconfig list logs probe status up" ;;
        "nat") echo "sessions" ;;
        "stn") echo "confirm restore status steal watch" ;;
        "trace") echo "pod-to-pod pod-to-service" ;;
        "vpp") echo "cli dump" ;;
    esac
}
_contivctl_opts() {
    case "$1" in
        "") echo "--debug --help --socket --version" ;;
        "agent") echo "--help" ;;
        "agent history") echo "--help --lab --limit --node --output -o" ;;
        "agent plan") echo "--help --lab --node --output -o" ;;
        "agent resync") echo "--help --lab --node --output -o" ;;
        "agent run") echo "--config --dataplane --etcd --etcd-data-dir --help --log-level --metrics-address --mtu --node --node-ip --pod-cidr --socket --stn-dir --underlay-if --vpp-api-socket --vpp-stats-socket --vpp-uplink --vpp-uplink-cidr --vpp-uplink-gateway" ;;
        "agent state") echo "--help --lab --node --output --prefix -o" ;;
        "agent status") echo "--help --lab --node --output -o" ;;
        "completion") echo "--help" ;;
        "install") echo "--help" ;;
        "install cni") echo "--agent-socket --bin-dir --chain --check --cni-version --conf-dir --dry-run --force --help --interpreter --output --plugin-dir --root --tuning-sysctl --uninstall -o" ;;
        "install manifests") echo "--dataplane --etcd --help --image --namespace --output --pod-cidr --service-cidr -o" ;;
        "install node") echo "--chain --cni-version --config --dataplane --dry-run --force --help --node --output --root --uninstall -o" ;;
        "ipam") echo "--help --lab --node --output -o" ;;
        "ipam gc") echo "--help --lab --node --output -o" ;;
        "ksr") echo "--help" ;;
        "ksr run") echo "--etcd --health-address --help --id --kubeconfig --lease-ttl --log-level" ;;
        "lab") echo "--help" ;;
        "lab apply") echo "--filename --help --name --output --timeout -f -o" ;;
        "lab delete") echo "--filename --help --name --output --timeout -f -o" ;;
        "lab down") echo "--help --name --output -o" ;;
        "lab exec") echo "--help --name" ;;
        "lab kubeconfig") echo "--help --name" ;;
        "lab list") echo "--help --output -o" ;;
        "lab logs") echo "--help --name --tail" ;;
        "lab probe") echo "--help --matrix --name --namespace --output --port --protocol --timeout -n -o" ;;
        "lab status") echo "--help --name --output -o" ;;
        "lab up") echo "--dataplane --demo --help --kube-api --name --nodes --output --pod-cidr --timeout --underlay -o" ;;
        "nat") echo "--help" ;;
        "nat sessions") echo "--all --help --lab --node --output --pod --service --summary -a -o" ;;
        "netstat") echo "--help --lab --namespace --node --output --sockets --watch -n -o -s -w" ;;
        "nodes") echo "--help --lab --node --output -o" ;;
        "pods") echo "--help --lab --node --output -o" ;;
        "policies") echo "--help --lab --namespace --node --output --port --protocol -n -o" ;;
        "report") echo "--help --lab --node --output-file --timeout -o" ;;
        "services") echo "--help --lab --namespace --node --output -n -o" ;;
        "status") echo "--help --lab --node --output --timeout -o" ;;
        "stn") echo "--help" ;;
        "stn confirm") echo "--dir --help --output -o" ;;
        "stn restore") echo "--dir --help --output --vpp-api-socket -o" ;;
        "stn status") echo "--dir --help --output -o" ;;
        "stn steal") echo "--check --confirm-timeout --dataplane --dir --help --output --vpp-api-socket -o" ;;
        "stn watch") echo "--dir --help --interval --once --vpp-api-socket" ;;
        "trace") echo "--help" ;;
        "trace pod-to-pod") echo "--help --lab --output --port --protocol --timeout -o -p" ;;
        "trace pod-to-service") echo "--help --lab --output --port --protocol --timeout -o -p" ;;
        "vpp") echo "--help" ;;
        "vpp cli") echo "--help --lab --node --output -o" ;;
        "vpp dump") echo "--help --lab --node --output -o" ;;
    esac
}
complete -F _contivctl contivctl

