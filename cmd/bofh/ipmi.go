package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/ipmi"
)

func init() { addCommand(newIPMICmd) }

// ipmiSite is the site section "ipmi".
type ipmiSite struct {
	BMCs map[string]ipmi.BMC `yaml:"bmcs"`
}

func (a *app) bmc(node string) (ipmi.BMC, error) {
	var cfg ipmiSite
	if err := a.site.Section("ipmi", &cfg); err != nil {
		return ipmi.BMC{}, usageError{err}
	}
	b, ok := cfg.BMCs[node]
	if !ok {
		return ipmi.BMC{}, usageError{fmt.Errorf("no BMC named %q in the site file's ipmi.bmcs section", node)}
	}
	if err := b.Validate(); err != nil {
		return ipmi.BMC{}, usageError{fmt.Errorf("BMC %s: %w", node, err)}
	}
	return b, nil
}

func newIPMICmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ipmi",
		Short: "BMC power, boot device, sensors and event log through ipmitool",
		Long: `BMCs are named in the site file:

  ipmi:
    bmcs:
      node07: {address: 10.0.0.107, user: admin, password_file: /etc/bofh/bmc.pw, interface: lanplus}`,
		Example: "  bofh ipmi power cycle node07\n  bofh ipmi bootdev node07 pxe --efi\n  bofh ipmi sensors node07 -o json\n  bofh ipmi lan show node07 -o json\n  bofh ipmi user list node07",
	}
	power := &cobra.Command{
		Use:     "power status|on|off|soft|cycle|reset NODE",
		Short:   "show or change chassis power (on/off/soft are undone on failure; cycle/reset run at commit)",
		Example: "  bofh ipmi power status node07\n  bofh ipmi power cycle node07",
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.bmc(args[1])
			if err != nil {
				return err
			}
			var step atomic.Params
			switch args[0] {
			case "status":
				on, err := ipmi.New(b, a.runner()).PowerStatus(cmd.Context())
				if err != nil {
					return err
				}
				return a.print(ipmi.PowerResult{On: on}, func(w io.Writer) { fmt.Fprintln(w, map[bool]string{true: "on", false: "off"}[on]) })
			case "on", "off", "soft":
				step = ipmi.Power{BMC: b, Action: args[0]}
			case "cycle", "reset":
				step = ipmi.PowerCycle{BMC: b, Action: args[0]}
			default:
				return usageError{fmt.Errorf("power action %q: want status, on, off, soft, cycle or reset", args[0])}
			}
			_, err = a.doSteps(cmd.Context(), "ipmi power "+args[0]+" "+args[1], nil, step)
			return err
		},
	}
	var persistent, efi bool
	bootdev := &cobra.Command{
		Use:     "bootdev NODE pxe|disk|cdrom|bios|safe|diag|floppy|none",
		Short:   "set the boot device (next boot unless --persistent); undone on failure",
		Example: "  bofh ipmi bootdev node07 pxe --efi\n  bofh ipmi bootdev node07 disk --persistent",
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.bmc(args[0])
			if err != nil {
				return err
			}
			var out ipmi.BootFlags
			if _, err := a.doSteps(cmd.Context(), "ipmi bootdev "+args[0], &out, ipmi.BootDev{BMC: b, Device: args[1], Persistent: persistent, EFI: efi}); err != nil {
				return err
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "boot device %s (persistent %v, efi %v)\n", out.Device, out.Persistent, out.EFI)
			})
		},
	}
	bootdev.Flags().BoolVar(&persistent, "persistent", false, "for every boot, not only the next")
	bootdev.Flags().BoolVar(&efi, "efi", false, "UEFI boot")
	query := func(use, short string, f func(cmd *cobra.Command, c *ipmi.Client) (any, func(io.Writer), error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " NODE", Short: short, Args: exactArgs(1),
			Example: "  bofh ipmi " + use + " node07 -o json",
			RunE: func(cmd *cobra.Command, args []string) error {
				b, err := a.bmc(args[0])
				if err != nil {
					return err
				}
				v, text, err := f(cmd, ipmi.New(b, a.runner()))
				if err != nil {
					return err
				}
				return a.print(v, text)
			},
		}
	}
	sensors := query("sensors", "sensor readings (sdr elist)", func(cmd *cobra.Command, c *ipmi.Client) (any, func(io.Writer), error) {
		rs, err := c.SDR(cmd.Context())
		return rs, func(w io.Writer) {
			for _, r := range rs {
				v := r.Text
				if r.Value != nil {
					v = fmt.Sprintf("%g %s", *r.Value, r.Unit)
				}
				fmt.Fprintf(w, "%-20s %-4s %s\n", r.Name, r.Status, v)
			}
		}, err
	})
	sel := query("sel", "the system event log", func(cmd *cobra.Command, c *ipmi.Client) (any, func(io.Writer), error) {
		es, err := c.SEL(cmd.Context())
		return es, func(w io.Writer) {
			for _, e := range es {
				fmt.Fprintf(w, "%s %s %s %s: %s %s\n", e.ID, e.Date, e.Time, e.Sensor, e.Description, e.Direction)
			}
		}, err
	})
	info := query("info", "BMC firmware and device information (mc info)", func(cmd *cobra.Command, c *ipmi.Client) (any, func(io.Writer), error) {
		mc, err := c.MCInfo(cmd.Context())
		return mc, func(w io.Writer) {
			fmt.Fprintf(w, "%s product %s firmware %s IPMI %s\n", mc.ManufacturerName, mc.ProductID, mc.FirmwareRevision, mc.IPMIVersion)
		}, err
	})
	list := &cobra.Command{
		Use: "list", Short: "list the BMCs of the site file", Args: exactArgs(0), Example: "  bofh ipmi list",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg ipmiSite
			if err := a.site.Section("ipmi", &cfg); err != nil {
				return usageError{err}
			}
			if cfg.BMCs == nil {
				cfg.BMCs = map[string]ipmi.BMC{} // -o json: {} rather than null
			}
			names := make([]string, 0, len(cfg.BMCs))
			for n := range cfg.BMCs {
				names = append(names, n)
			}
			sort.Strings(names)
			return a.print(cfg.BMCs, func(w io.Writer) {
				for _, n := range names {
					fmt.Fprintf(w, "%-12s %s\n", n, cfg.BMCs[n])
				}
			})
		},
	}
	var lanChannel, userChannel int
	lanShow := &cobra.Command{
		Use: "show NODE", Short: "LAN channel settings (lan print): address, VLAN, cipher suites", Args: exactArgs(1),
		Example: "  bofh ipmi lan show node07\n  bofh ipmi lan show node07 --channel 8 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.bmc(args[0])
			if err != nil {
				return err
			}
			if lanChannel < 0 || lanChannel > 15 {
				return usageError{fmt.Errorf("channel %d: want 0 to 15", lanChannel)}
			}
			l, err := ipmi.New(b, a.runner()).LAN(cmd.Context(), lanChannel)
			if err != nil {
				return err
			}
			return a.print(l, func(w io.Writer) {
				vlan := "disabled"
				if l.VLAN != 0 {
					vlan = fmt.Sprintf("%d (priority %d)", l.VLAN, l.VLANPriority)
				}
				fmt.Fprintf(w, "channel       %d\nip source     %s\nip            %s\nnetmask       %s\nmac           %s\ngateway       %s (%s)\nvlan          %s\ncipher suites %s\nauth types    %s\n",
					l.Channel, l.IPSource, l.IP, l.Netmask, l.MAC, l.Gateway, l.GatewayMAC, vlan, strings.Trim(fmt.Sprint(l.CipherSuites), "[]"), strings.Join(l.AuthTypes, " "))
			})
		},
	}
	lanShow.Flags().IntVar(&lanChannel, "channel", 1, "LAN channel number")
	lanCmd := &cobra.Command{Use: "lan", Short: "BMC LAN settings", Example: "  bofh ipmi lan show node07 -o json"}
	lanCmd.AddCommand(lanShow)
	userList := &cobra.Command{
		Use: "list NODE", Short: "users of a channel (user list); unnamed unused slots are left out", Args: exactArgs(1),
		Example: "  bofh ipmi user list node07\n  bofh ipmi user list node07 --channel 8 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := a.bmc(args[0])
			if err != nil {
				return err
			}
			if userChannel < 0 || userChannel > 15 {
				return usageError{fmt.Errorf("channel %d: want 0 to 15", userChannel)}
			}
			us, err := ipmi.New(b, a.runner()).Users(cmd.Context(), userChannel)
			if err != nil {
				return err
			}
			if us == nil {
				us = []ipmi.User{} // -o json: [] rather than null
			}
			return a.print(us, func(w io.Writer) {
				fmt.Fprintf(w, "%-3s %-16s %-6s %-9s %-8s %s\n", "ID", "NAME", "CALLIN", "LINK-AUTH", "IPMI-MSG", "PRIV")
				for _, u := range us {
					fmt.Fprintf(w, "%-3d %-16s %-6v %-9v %-8v %s\n", u.ID, u.Name, u.Callin, u.LinkAuth, u.IPMIMsg, u.PrivLimit)
				}
			})
		},
	}
	userList.Flags().IntVar(&userChannel, "channel", 1, "LAN channel number")
	userCmd := &cobra.Command{Use: "user", Short: "BMC users", Example: "  bofh ipmi user list node07 -o json"}
	userCmd.AddCommand(userList)
	cmd.AddCommand(power, bootdev, sensors, sel, info, list, lanCmd, userCmd)
	return cmd
}
