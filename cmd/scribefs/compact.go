package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/internal/control"
)

func compactCommand() *cli.Command {
	return &cli.Command{
		Name:  "compact",
		Usage: "shrink the hot-tier file after segments have left it (the store must not be mounted)",
		Description: "bbolt reuses the pages of deleted and archived segments, so the hot-tier file stops\n" +
			"growing, but it never gives them back to the file system. compact rewrites the file\n" +
			"without them (written beside it, fsynced, renamed over it). It needs the file to itself:\n" +
			"unmount first.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("compact takes no arguments")
			}
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			path := cfg.Storage.Hot.Path
			if client, err := control.Dial(control.SocketPath(path)); err == nil {
				client.Close()
				return fmt.Errorf("hot tier %s: a mount is serving this store; unmount it before compacting", path)
			}
			before, after, err := local.Compact(path, 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "compacted %s: %d -> %d bytes\n", path, before, after)
			return nil
		},
	}
}
