use proto::common::v1::PageRequest;
use proto::users::v1::{BlockRequest, SearchUsersRequest, SearchUsersResponse};
use service_kit::ApiError;

use crate::helpers::{TestApp, User, authed};

async fn search(
    app: &TestApp,
    who: &User,
    query: &str,
    limit: u32,
    cursor: &str,
) -> Result<SearchUsersResponse, ApiError> {
    app.client
        .clone()
        .search_users(authed(
            SearchUsersRequest {
                query: query.into(),
                page: Some(PageRequest {
                    cursor: cursor.into(),
                    limit,
                }),
            },
            &who.token,
        ))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

fn usernames(response: &SearchUsersResponse) -> Vec<String> {
    response
        .hits
        .iter()
        .map(|h| h.profile.as_ref().unwrap().username.clone())
        .collect()
}

#[tokio::test]
async fn search_ranks_exact_then_prefix_then_fuzzy_and_pages_by_cursor() {
    let app = TestApp::spawn().await;
    let me = app.register("searcher", "Searcher").await;
    app.register("anna", "Anna").await;
    app.register("annabelle", "Annabelle Lee").await;
    app.register("ann_marie", "Ann Marie").await;
    app.register("jo_smith", "Joanna Smith").await;
    app.register("bob", "Bob Anna Builder").await;
    app.register("zed", "Zed").await;

    let all = search(&app, &me, "Anna", 20, "").await.unwrap();
    let names = usernames(&all);
    assert_eq!(names[0], "anna", "exact username first: {names:?}");
    assert_eq!(names[1], "annabelle", "then username prefix: {names:?}");
    assert!(
        names.contains(&"jo_smith".to_owned()) && names.contains(&"bob".to_owned()),
        "fuzzy display names: {names:?}"
    );
    assert!(!names.contains(&"zed".to_owned()) && !names.contains(&"searcher".to_owned()));
    let scores: Vec<f32> = all.hits.iter().map(|h| h.score).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ranked: {scores:?}"
    );

    // The same results, two at a time, without gaps or repeats.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = search(&app, &me, "anna", 2, &cursor).await.unwrap();
        paged.extend(usernames(&page));
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(paged, names);

    // "_" is a literal in usernames, not a wildcard.
    assert_eq!(
        usernames(&search(&app, &me, "ann_", 20, "").await.unwrap())[0],
        "ann_marie"
    );
    assert_eq!(
        search(&app, &me, "", 20, "")
            .await
            .unwrap_err()
            .field
            .as_deref(),
        Some("query")
    );
    assert_eq!(
        search(&app, &me, "anna", 500, "")
            .await
            .unwrap_err()
            .field
            .as_deref(),
        Some("page.limit")
    );
    assert_eq!(
        search(&app, &me, "anna", 5, "garbage!")
            .await
            .unwrap_err()
            .field
            .as_deref(),
        Some("page.cursor")
    );
    app.stop().await;
}

#[tokio::test]
async fn users_who_blocked_the_searcher_are_not_found() {
    let app = TestApp::spawn().await;
    let me = app.register("seeker", "Seeker").await;
    let hider = app.register("carla", "Carla").await;
    app.register("carlos", "Carlos").await;
    assert_eq!(
        usernames(&search(&app, &me, "carl", 20, "").await.unwrap()),
        ["carla", "carlos"]
    );

    app.client
        .clone()
        .block(authed(
            BlockRequest {
                user_id: me.id.to_string(),
            },
            &hider.token,
        ))
        .await
        .unwrap();
    assert_eq!(
        usernames(&search(&app, &me, "carl", 20, "").await.unwrap()),
        ["carlos"]
    );
    // Blocking is one-directional for search: carla still finds the seeker.
    assert_eq!(
        usernames(&search(&app, &hider, "seek", 20, "").await.unwrap()),
        ["seeker"]
    );
    app.stop().await;
}
