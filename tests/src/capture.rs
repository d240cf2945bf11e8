//! Which interfaces DHCP crossed on the host while a scenario ran: tcpdump on every
//! interface (`-i any`, which names the interface on each line), DHCP ports only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bins;
use ironboot_testkit::Proc;

pub struct DhcpCapture {
    proc: Proc,
    file: PathBuf,
}

impl DhcpCapture {
    /// Starts capturing into `<dir>/dhcp-capture.txt`; returns once tcpdump listens.
    #[track_caller]
    pub fn start(dir: &Path) -> DhcpCapture {
        let tcpdump = bins::system("/usr/bin/tcpdump", "tcpdump");
        let file = dir.join("dhcp-capture.txt");
        let mut cmd = std::process::Command::new(tcpdump);
        // -l: line-buffered, so the file is current when read.
        cmd.args(["-i", "any", "-nn", "-l", "udp and (port 67 or port 68)"]);
        let mut proc = Proc::spawn_logged(cmd, "tcpdump", &file);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !proc.log_text().contains("listening on") {
            assert!(
                proc.exited().is_none(),
                "tcpdump exited: {}",
                proc.log_text()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "tcpdump did not start: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        DhcpCapture { proc, file }
    }

    /// Stops the capture; the number of DHCP packets seen per interface.
    pub fn stop(mut self) -> Vec<(String, usize)> {
        self.proc.stop(Duration::from_secs(2));
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        per_interface(&text)
    }
}

/// Counts tcpdump `-i any` lines (`TIME IFACE In|Out|B|M|P IP …`) by interface.
fn per_interface(text: &str) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(_time), Some(iface), Some(dir)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        if !["In", "Out", "B", "M", "P"].contains(&dir) {
            continue;
        }
        match counts.iter_mut().find(|(i, _)| i == iface) {
            Some((_, n)) => *n += 1,
            None => counts.push((iface.to_string(), 1)),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_counted_by_interface() {
        let text = "tcpdump: data link type LINUX_SLL2\nlistening on any, link-type LINUX_SLL2\n\
            01:02:03.000001 ibu1x0 In  IP 0.0.0.0.68 > 255.255.255.255.67: BOOTP/DHCP, Request from 52:54:00:e2:e0:31, length 300\n\
            01:02:03.000002 ibu1x0 Out IP 10.91.0.1.67 > 255.255.255.255.68: BOOTP/DHCP, Reply, length 300\n\
            01:02:03.000003 eth0 Out IP 10.0.0.1.67 > 10.0.0.2.68: BOOTP/DHCP, Reply, length 300\n";
        assert_eq!(
            super::per_interface(text),
            vec![("ibu1x0".to_string(), 2), ("eth0".to_string(), 1)]
        );
    }
}
