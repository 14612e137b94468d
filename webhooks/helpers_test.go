package webhooks_test

import "os"

func osWriteFile(p, content string) error { return os.WriteFile(p, []byte(content), 0o600) }
