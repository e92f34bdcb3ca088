"""Test doubles: an Android phone emulator behind a fake ``adb`` executable (see ``adb_emulator``)."""
