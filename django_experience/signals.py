"""Signal receivers of django-experience (sign-in identify, sign-out, user deletion)."""
