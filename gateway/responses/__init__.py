"""The Responses API around the serving pipeline: requests become chats, answers become
``response`` objects, and stored responses continue conversations."""
