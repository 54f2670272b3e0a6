"""The feedback loop: score log, realised outcomes, managers' judgements and live quality per model version.

`Feedback` is the store the service holds (start/stop with the app; `with_history` before scoring,
`record_scores` after); `feedback_router` gives its HTTP routes. See docs/feedback.md.
"""

from service.feedback.config import FeedbackConfig
from service.feedback.router import feedback_router
from service.feedback.store import Feedback, FeedbackUnavailable

__all__ = ["Feedback", "FeedbackConfig", "FeedbackUnavailable", "feedback_router"]
