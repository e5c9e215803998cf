//! Retained messages: set, replace, clear, QoS on delivery, the RETAIN
//! flag on live messages, MQTT 5 Retain Handling and Retain As Published.

use crate::mqtt_util::{V5, World, both_versions};

#[tokio::test]
async fn retained_messages_are_set_replaced_and_cleared() {
    let w = World::start().await;
    // Each run leaves retained messages behind; the scenario clears the one
    // it checks for absence, and the others are simply replaced.
    both_versions(&w, "retained").await;
}

#[tokio::test]
async fn retain_handling_and_retain_as_published() {
    let w = World::start().await;
    w.peer().proto(V5).run("retain_handling").await;
}
