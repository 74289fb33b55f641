use riptide_testkit::TestDatabase;

#[tokio::test]
async fn fresh_database_has_logical_wal_and_is_dropped() {
    let name;
    {
        let db = TestDatabase::create().await;
        name = db.name().to_owned();
        let client = db.client().await;
        let row = client.query_one("SHOW wal_level", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "logical");
        let row = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), name);
    }
    let (admin, conn) = tokio_postgres::connect(
        &riptide_testkit::server().url("postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "database is dropped with its TestDatabase");
}
