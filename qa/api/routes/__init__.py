"""One APIRouter per resource; ``qa.api.app.create_app`` includes them."""
