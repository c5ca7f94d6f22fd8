//! The consultation room directory's read-modify-write steps, in memory and in a real Redis
//! (a `redis-server` started here): concurrent changes from many tasks (standing in for
//! handlers on several control instances) lose none, and a replaced connection's late
//! disconnect never marks or removes its replacement's place.

use std::sync::Arc;

mod support;

use support::redis_server::{RedisServer, redis_server};
use teletip_control::signaling::directory::{Directory, Participant, PeerState};
use teletip_control::store::Role;
use uuid::Uuid;

/// Each directory to test, with the Redis server that backs it kept alive alongside.
async fn directories() -> Vec<(&'static str, Arc<Directory>, Option<RedisServer>)> {
    let mut all = vec![("memory", Arc::new(Directory::memory()), None)];
    if let Some(server) = redis_server() {
        let client = redis::Client::open(server.url.as_str()).unwrap();
        let directory = Directory::redis(&client).await.expect("connect to the test Redis");
        all.push(("redis", Arc::new(directory), Some(server)));
    }
    all
}

fn participant(user: Uuid, socket: &str, state: PeerState) -> Participant {
    Participant {
        peer_id: "peer-1".into(),
        user_id: user,
        role: Role::Patient,
        state,
        socket_id: socket.into(),
        disconnected_at_ms: None,
        waiting_since_ms: None,
    }
}

#[tokio::test]
async fn concurrent_updates_lose_no_change() {
    for (name, directory, _server) in directories().await {
        let room = Uuid::new_v4();
        let user = Uuid::new_v4();
        directory.put(room, &participant(user, "s1", PeerState::Waiting)).await.unwrap();
        // 16 tasks add 1 to the same field 25 times each; a read followed by a blind write
        // would lose some of the 400.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let directory = directory.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let plus_one = |p: &Participant| {
                            Some(Participant {
                                disconnected_at_ms: Some(p.disconnected_at_ms.unwrap_or(0) + 1),
                                ..p.clone()
                            })
                        };
                        directory.update(room, user, plus_one).await.unwrap().expect("the entry exists");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let after = directory.get(room, user).await.unwrap().unwrap();
        assert_eq!(after.disconnected_at_ms, Some(400), "{name}: every update counted");
    }
}

#[tokio::test]
async fn a_replaced_connection_neither_marks_nor_removes_the_new_place() {
    for (name, directory, _server) in directories().await {
        let room = Uuid::new_v4();
        let user = Uuid::new_v4();
        directory.put(room, &participant(user, "old", PeerState::Admitted)).await.unwrap();
        // The replacement joins (on another instance) before the old connection's disconnect
        // handler gets to the directory.
        directory.put(room, &participant(user, "new", PeerState::Admitted)).await.unwrap();
        let by_old = |p: &Participant| p.socket_id == "old";
        let marked = directory
            .update(room, user, |p| by_old(p).then(|| Participant { disconnected_at_ms: Some(1), ..p.clone() }))
            .await
            .unwrap();
        assert_eq!(marked, None, "{name}: the old connection does not mark the new place");
        assert_eq!(directory.remove_if(room, user, by_old).await.unwrap(), None, "{name}: nor remove it");
        let now = directory.get(room, user).await.unwrap().unwrap();
        assert_eq!((now.socket_id.as_str(), now.disconnected_at_ms), ("new", None), "{name}: the new place stands");

        // The holder itself may.
        let removed = directory.remove_if(room, user, |p| p.socket_id == "new").await.unwrap();
        assert_eq!(removed.map(|p| p.socket_id), Some("new".into()), "{name}: the holder leaves");
        assert_eq!(directory.get(room, user).await.unwrap(), None, "{name}: and the place is gone");
        assert_eq!(
            directory.update(room, user, |p| Some(p.clone())).await.unwrap(),
            None,
            "{name}: no entry, no write"
        );
    }
}

#[tokio::test]
async fn admission_only_of_a_patient_still_waiting() {
    for (name, directory, _server) in directories().await {
        let room = Uuid::new_v4();
        let user = Uuid::new_v4();
        directory.put(room, &participant(user, "s1", PeerState::Waiting)).await.unwrap();
        let admit = |p: &Participant| {
            (p.state == PeerState::Waiting).then(|| Participant { state: PeerState::Admitted, ..p.clone() })
        };
        let first = directory.update(room, user, admit).await.unwrap();
        assert_eq!(first.map(|p| p.state), Some(PeerState::Admitted), "{name}: admitted");
        assert_eq!(directory.update(room, user, admit).await.unwrap(), None, "{name}: not twice");
        assert_eq!(directory.list(room).await.unwrap().len(), 1, "{name}: one entry");
    }
}
