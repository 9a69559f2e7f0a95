"""The server's routes by area, each an APIRouter over the shared ServerState."""
