"""hil-af serial bridge firmware, MicroPython on an RP2040 (Raspberry Pi Pico).

Copy ``bridge_protocol.py`` and this file (as ``main.py``) to the board:

    mpremote cp drivers/serial-bridge/bridge_protocol.py :bridge_protocol.py
    mpremote cp drivers/serial-bridge/main.py :main.py

It reads request lines from the USB CDC serial port (/dev/ttyACM0 on the
host), drives the VCM chip on I2C0 (GP4 = SDA, GP5 = SCL, 400 kHz) and
writes one reply line per request (PROTOCOL.md).  Edit CHIP and ADDR below
for your lens module.
"""

import sys
import time

import machine
import micropython

from bridge_protocol import Bridge

CHIP = "dw9817"       # dw9817 (Camera Module 3 lens) | dw9807 | dw9714 | ad5398
ADDR = 0x0C
I2C_ID, SDA, SCL, FREQ = 0, 4, 5, 400_000


def main():
    micropython.kbd_intr(-1)  # binary-safe stdin: Ctrl-C is just a byte
    i2c = machine.I2C(I2C_ID, sda=machine.Pin(SDA), scl=machine.Pin(SCL), freq=FREQ)
    bridge = Bridge(i2c, chip=CHIP, addr=ADDR, sleep_ms=time.sleep_ms)
    led = machine.Pin("LED", machine.Pin.OUT)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        line = stdin.readline()
        if not line:
            continue
        if len(line) > 128:  # over-long line: answer BADFRAME, do not grow memory
            line = b"x"
        led.toggle()
        stdout.write(bridge.handle_line(line))


main()
