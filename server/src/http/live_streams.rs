//! Caps on open live streams (the class stream and run pages' streams): each holds a
//! connection and a broadcast receiver for as long as its page is open, so one student's
//! script, or a tab opened three hundred times, must not hold the server's connections.
//! A stream past a cap is refused with 429 and a message that says which cap it hit.

use app::auth::ssr::Caller;
use app::error::AppError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open streams one account (a student or an instructor) may hold: a few tabs each with
/// the class page and a run page.
pub const PER_ACCOUNT: usize = 8;
/// Open streams from one address: a whole class behind one proxy fits.
pub const PER_ADDRESS: usize = 600;
/// Open streams in all, well under the process's usual limit of 1,024 open files.
pub const IN_ALL: usize = 800;

#[derive(Debug, Default)]
struct Counts {
    in_all: usize,
    by_account: HashMap<String, usize>,
    by_address: HashMap<IpAddr, usize>,
}

/// The open streams, counted per account, per address and in all.
#[derive(Debug, Clone, Default)]
pub struct LiveStreams(Arc<Mutex<Counts>>);

/// One open stream's place; dropping it (the page closed) frees the place.
#[derive(Debug)]
pub struct StreamPlace {
    streams: LiveStreams,
    account: String,
    address: IpAddr,
}

/// The key an account's streams are counted under.
fn account_of(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => "anonymous".to_string(),
        Caller::Instructor(instructor) => format!("instructor {}", instructor.id),
        Caller::Student(student) => format!("student {}", student.id),
    }
}

impl LiveStreams {
    /// Takes a place for a stream of `caller` from `address`, or says which cap is full.
    pub fn open(&self, caller: &Caller, address: IpAddr) -> Result<StreamPlace, AppError> {
        let account = account_of(caller);
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let refuse = |message: &str| AppError::busy(message, std::time::Duration::from_secs(10));
        if counts.by_account.get(&account).copied().unwrap_or(0) >= PER_ACCOUNT {
            return Err(refuse(
                "You have too many Jigsaw Lab pages open with live updates. Close some tabs, \
                 then reload this one.",
            ));
        }
        if counts.by_address.get(&address).copied().unwrap_or(0) >= PER_ADDRESS {
            return Err(refuse(
                "Too many live pages are open from this network. Close some tabs, then reload.",
            ));
        }
        if counts.in_all >= IN_ALL {
            return Err(refuse(
                "The server has as many live pages open as it can serve. Reload in a minute.",
            ));
        }
        counts.in_all += 1;
        *counts.by_account.entry(account.clone()).or_default() += 1;
        *counts.by_address.entry(address).or_default() += 1;
        Ok(StreamPlace {
            streams: self.clone(),
            account,
            address,
        })
    }

    /// Streams open now, in all.
    pub fn open_now(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).in_all
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut counts = self.streams.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.in_all = counts.in_all.saturating_sub(1);
        if let Some(n) = counts.by_account.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                counts.by_account.remove(&self.account);
            }
        }
        if let Some(n) = counts.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::auth::ssr::StudentCaller;
    use std::net::Ipv4Addr;

    fn student(id: i64) -> Caller {
        Caller::Student(StudentCaller {
            id,
            name: format!("s{id}"),
            class_id: 1,
            class_name: "c".into(),
            team_id: 1,
            team_name: "t".into(),
        })
    }

    #[test]
    fn an_account_gets_its_cap_and_a_closed_page_frees_a_place() {
        let streams = LiveStreams::default();
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut places: Vec<_> = (0..PER_ACCOUNT)
            .map(|_| streams.open(&student(1), here).unwrap())
            .collect();
        let refused = streams.open(&student(1), here).unwrap_err();
        assert!(refused.to_string().contains("too many"), "{refused}");
        // Another student on the same network is not affected.
        let other = streams.open(&student(2), here).unwrap();
        places.pop();
        assert!(streams.open(&student(1), here).is_ok());
        drop(other);
        drop(places);
        assert_eq!(streams.open_now(), 0);
    }

    #[test]
    fn the_address_and_total_caps_hold() {
        let streams = LiveStreams::default();
        let here = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let places: Vec<_> = (0..PER_ADDRESS as i64)
            .map(|id| streams.open(&student(id), here).unwrap())
            .collect();
        let refused = streams.open(&student(-1), here).unwrap_err();
        assert!(refused.to_string().contains("this network"), "{refused}");
        let elsewhere = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let more: Vec<_> = (0..(IN_ALL - PER_ADDRESS) as i64)
            .map(|id| streams.open(&student(10_000 + id), elsewhere).unwrap())
            .collect();
        let refused = streams.open(&student(-2), elsewhere).unwrap_err();
        assert!(
            refused.to_string().contains("as many live pages"),
            "{refused}"
        );
        drop((places, more));
        assert_eq!(streams.open_now(), 0);
    }
}
