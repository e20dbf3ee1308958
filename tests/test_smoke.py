def test_admin_login_page_answers(client, db):
    assert client.get("/admin/login/").status_code == 200
