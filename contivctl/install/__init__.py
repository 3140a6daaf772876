"""``contivctl install``: what a node needs, as files planned, diffed and
written atomically (:mod:`contivctl.install.plan`), rendered purely
(:mod:`contivctl.install.files`, and the CNI plugin and conflist of
:mod:`cni.install`)."""
