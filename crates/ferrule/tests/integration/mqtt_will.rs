//! Will messages: published when a connection is lost (or on MQTT 5
//! DISCONNECT 0x04), not on a normal DISCONNECT; a delayed will released
//! by a clean start; and a will obeys the same rules as any publish from
//! its client. (Will Delay's timing, and the will after a keep-alive
//! timeout, are tested in-process on paused time: `ferrule-mqtt`'s
//! `tests/timing.rs`; after a protocol error: `mqtt_bad_input`.)

use crate::mqtt_util::{V5, World, both_versions};

#[tokio::test]
async fn a_lost_connection_publishes_the_will() {
    let w = World::start().await;
    both_versions(&w, "will_abnormal").await;
}

#[tokio::test]
async fn a_retained_will_is_kept() {
    let w = World::start().await;
    both_versions(&w, "will_retained").await;
}

#[tokio::test]
async fn a_normal_disconnect_discards_the_will() {
    let w = World::start().await;
    both_versions(&w, "will_normal_disconnect").await;
}

#[tokio::test]
async fn disconnect_with_will_message_publishes_it() {
    let w = World::start().await;
    w.peer().proto(V5).run("will_disconnect_with_will").await;
}

#[tokio::test]
async fn a_clean_start_reconnect_ends_the_session_and_releases_the_will() {
    let w = World::start().await;
    w.peer().proto(V5).run("will_delay_clean_start").await;
}

#[tokio::test]
async fn a_clean_start_takeover_ends_the_session_and_releases_the_will() {
    let w = World::start().await;
    w.peer()
        .proto(V5)
        .run("will_delay_takeover_clean_start")
        .await;
}

#[tokio::test]
async fn a_will_outside_the_devices_topics_is_not_delivered() {
    let w = World::start().await;
    both_versions(&w, "will_acl").await;
}

#[tokio::test]
async fn a_will_cannot_publish_to_a_dollar_topic() {
    let w = World::start().await;
    both_versions(&w, "will_dollar_topic").await;
}
