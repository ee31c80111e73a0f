from io import StringIO

from django.core.management import call_command
from django.test import TestCase


class ApiSchemaTests(TestCase):
    def test_it_generates_the_whole_schema_without_warnings(self):
        out = StringIO()
        call_command(
            "spectacular", "--fail-on-warn", "--format", "openapi-json", stdout=out
        )
        schema = out.getvalue()
        self.assertIn('"/api/services/{service_id}/predict"', schema)
        self.assertIn('"/api/projects/{project_id}/labels/assign"', schema)

    def test_it_serves_the_schema_at_api_schema(self):
        response = self.client.get("/api/schema/")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"openapi", response.content)
