// liblo, the OSC library (Debian: liblo-dev, LGPL-2.1+, dynamically linked): the daemon's
// Non Session Manager client (NSMClient.swift).
#include <lo/lo.h>
#include <stdint.h>

// lo_send and lo_message_add are variadic, which Swift cannot call; the daemon builds messages
// with the typed lo_message_add_* calls and sends them with lo_send_message_from.
