module github.com/imans-project/imans/integration/hooksd

go 1.26.0

require (
	github.com/imans-project/imans v0.0.0
	github.com/opencontainers/runtime-spec v1.3.0
)

require (
	github.com/containers/common v0.64.2
	github.com/containers/storage v1.59.1 // indirect
	github.com/fsnotify/fsnotify v1.9.0 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/imans-project/imans => ../..
