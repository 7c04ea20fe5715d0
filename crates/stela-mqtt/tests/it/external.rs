//! External broker mode against a real Mosquitto.
