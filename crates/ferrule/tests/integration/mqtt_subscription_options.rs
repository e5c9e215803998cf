//! MQTT 5 subscription options and shared subscriptions: No Local,
//! Subscription Identifiers, `$share/GROUP/filter`.

use crate::mqtt_util::{V3, V5, World};

#[tokio::test]
async fn no_local_skips_the_clients_own_messages() {
    let w = World::start().await;
    w.peer().proto(V5).run("no_local").await;
}

#[tokio::test]
async fn subscription_identifiers_come_back_in_publish() {
    let w = World::start().await;
    w.peer().proto(V5).run("subscription_ids").await;
}

#[tokio::test]
async fn shared_subscriptions_split_messages_between_members() {
    // Shared subscriptions are an MQTT 5 feature; the broker accepts the
    // same filters from 3.1.1 clients, as most brokers do.
    let w = World::start().await;
    for v in [V5, V3] {
        w.peer().proto(v).run("shared").await;
    }
}

#[tokio::test]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let w = World::start().await;
    w.peer().proto(V5).run("shared_no_local").await;
}

#[tokio::test]
async fn shared_subscriptions_get_no_retained_messages() {
    let w = World::start().await;
    w.peer().proto(V5).run("shared_no_retained").await;
}

#[tokio::test]
async fn no_local_is_about_the_client_not_its_client_id() {
    let w = World::start().await;
    w.peer().proto(V5).run("no_local_other_identity").await;
}
