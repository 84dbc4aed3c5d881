"""Memory of common Cortex-M boards, to check that a model fits before flashing it.

Flash and RAM are the chip's totals from the vendors' datasheets. `CODE_RESERVE` (flash) and
`RAM_RESERVE` are stated allowances for the TFLM runtime and the application (TFLM with CMSIS-NN and the
kernels of a MobileNet is roughly 100-150 KB of code; stack, globals and buffers take tens of KB): the
check is `model + CODE_RESERVE <= flash` and `arena + RAM_RESERVE <= RAM`. Use your own linker map for the
exact figure.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
CODE_RESERVE = 160 * KIB
RAM_RESERVE = 32 * KIB


@dataclass(frozen=True)
class Board:
    """One board of `BOARDS`: its name, its core (arm-none-eabi-gcc's -mcpu), its flash and RAM in bytes, and a note
    naming the chip. The checks take `CODE_RESERVE` of flash for the application's code and `RAM_RESERVE` of RAM
    for its stack and data."""

    name: str
    core: str  # arm-none-eabi-gcc -mcpu value
    flash: int
    ram: int
    note: str


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board("nucleo-l4r5zi", "cortex-m4", 2 * MIB, 640 * KIB, "STM32L4R5ZI, Cortex-M4F 120 MHz"),
        Board("nucleo-f746zg", "cortex-m7", 1 * MIB, 320 * KIB, "STM32F746ZG, Cortex-M7 216 MHz"),
        Board("nucleo-h743zi", "cortex-m7", 2 * MIB, 1 * MIB, "STM32H743ZI, Cortex-M7 480 MHz (RAM in several banks)"),
        Board("arduino-nano-33-ble", "cortex-m4", 1 * MIB, 256 * KIB, "nRF52840, Cortex-M4F 64 MHz"),
        Board("corstone-300", "cortex-m55", 4 * MIB, 2 * MIB, "Arm Corstone-300 (MPS3 AN547 / FVP), Cortex-M55"),
        Board("mps2-an386", "cortex-m4", 4 * MIB, 4 * MIB, "Arm MPS2 AN386, Cortex-M4 (QEMU's mps2-an386)"),
    )
}


@dataclass(frozen=True)
class VendorFiles:
    """What a real board needs from its vendor to run the firmware's app (`make app BOARD_SOURCES=...
    BOARD_LDFLAGS=...`): the CMSIS device pack (or SDK) that holds them, its startup code, its system init, the
    linker script of the exact part, the UART the board's USB serial port carries (retarget newlib's `_write` to it
    to see the app's lines), how the ELF goes onto the board, and the compiler flags the vendor files need
    (`BOARD_CFLAGS`: the part's define and the pack's header folder, under `$PACK`, the pack's device folder, of which
    `pack_dir` is an example)."""

    pack: str
    startup: str
    system: str
    linker_script: str
    uart: str
    flash: str
    cflags: str = ""
    pack_dir: str = ""


#: The vendor files of each real board of `BOARDS` (the QEMU boards bring theirs: micro/boards/).
VENDOR_FILES: dict[str, VendorFiles] = {
    "nucleo-l4r5zi": VendorFiles(
        "STMicroelectronics' CMSIS device pack for the STM32L4 (STM32CubeL4: Drivers/CMSIS/Device/ST/STM32L4xx)",
        "startup_stm32l4r5xx.s", "system_stm32l4xx.c", "STM32L4R5ZITx_FLASH.ld (STM32CubeIDE / CubeMX)",
        "LPUART1 (PG7/PG8), the ST-LINK's virtual COM port",
        "arm-none-eabi-objcopy -O binary {elf} app.bin && st-flash write app.bin 0x8000000",
        "-DSTM32L4R5xx -I$PACK/Include", "~/STM32CubeL4/Drivers/CMSIS/Device/ST/STM32L4xx"),
    "nucleo-f746zg": VendorFiles(
        "STMicroelectronics' CMSIS device pack for the STM32F7 (STM32CubeF7: Drivers/CMSIS/Device/ST/STM32F7xx)",
        "startup_stm32f746xx.s", "system_stm32f7xx.c", "STM32F746ZGTx_FLASH.ld (STM32CubeIDE / CubeMX)",
        "USART3 (PD8/PD9), the ST-LINK's virtual COM port",
        "arm-none-eabi-objcopy -O binary {elf} app.bin && st-flash write app.bin 0x8000000",
        "-DSTM32F746xx -I$PACK/Include", "~/STM32CubeF7/Drivers/CMSIS/Device/ST/STM32F7xx"),
    "nucleo-h743zi": VendorFiles(
        "STMicroelectronics' CMSIS device pack for the STM32H7 (STM32CubeH7: Drivers/CMSIS/Device/ST/STM32H7xx)",
        "startup_stm32h743xx.s", "system_stm32h7xx.c",
        "STM32H743ZITx_FLASH.ld (STM32CubeIDE / CubeMX; put the arena in AXI SRAM, the 512 KiB bank)",
        "USART3 (PD8/PD9), the ST-LINK's virtual COM port",
        "arm-none-eabi-objcopy -O binary {elf} app.bin && st-flash write app.bin 0x8000000",
        "-DSTM32H743xx -I$PACK/Include", "~/STM32CubeH7/Drivers/CMSIS/Device/ST/STM32H7xx"),
    "arduino-nano-33-ble": VendorFiles(
        "Nordic's nrfx MDK (nRF5 SDK / nrfx: mdk/)", "gcc_startup_nrf52840.S", "system_nrf52840.c",
        "nrf52840_xxaa.ld (nrfx mdk; the Arduino bootloader keeps 0x0-0x10000: start FLASH at 0x10000 to keep it)",
        "none on the USB port without the Arduino core (its CDC stack): use UARTE0 on pins TX/RX, or the sketch in "
        "arduino/",
        "arm-none-eabi-objcopy -O ihex {elf} app.hex, then an SWD probe (nrfjprog --program app.hex --chiperase "
        "--reset); or the Arduino sketch in arduino/ with the IDE's upload",
        "-DNRF52840_XXAA -I$PACK", "~/nrfx/mdk"),
    "corstone-300": VendorFiles(
        "Arm's Corstone-300 device files (CMSIS pack ARM::V2M_MPS3_SSE_300_BSP)", "startup_SSE300MPS3.c",
        "system_SSE300MPS3.c", "the BSP's linker script for the FVP's ITCM/DTCM and SRAM",
        "UART0 of the CMSDK (the FVP prints it on its telnet terminal)", "FVP_Corstone_SSE-300_Ethos-U55 -a {elf}",
        "-I$PACK/Device/Include", "~/V2M_MPS3_SSE_300_BSP"),
}


#: QEMU's machine for each core the firmware builds for (micro/Makefile's QEMU_BOARD_<core>, the
#: board `make run-app` and `make run-selftest` use without BOARD=): Arm's MPS2/MPS3 FPGA images of each core.
QEMU_BOARDS = {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500", "cortex-m33": "mps2-an505",
               "cortex-m55": "mps3-an547"}
#: The SysTick clock of each QEMU board the firmware runs on, Hz, measured (QEMU 7.2, `-icount shift=0`: a loop of
#: 20 M instructions took 500,000 / 400,000 / 640,000 / 3,360,000 ticks). With `-icount shift=0` each instruction
#: takes 1 ns, so instructions = SysTick ticks x 1e9 / Hz (`make run-app`'s ticks).
QEMU_SYSTICK_HZ = {"mps2-an386": 25_000_000, "mps2-an500": 25_000_000, "mps2-an505": 20_000_000,
                   "mps3-an547": 32_000_000, "netduinoplus2": 168_000_000, "mps2-an386-ram64k": 25_000_000}


def qemu_instructions(ticks: int, board: str) -> float:
    """Instructions QEMU ran in `ticks` SysTick ticks of `board` under `-icount shift=0` (QEMU is not
    cycle-accurate: a proxy for cost, not cycles)."""
    if board not in QEMU_SYSTICK_HZ:
        raise ValueError(f"`board` must be one of {sorted(QEMU_SYSTICK_HZ)}. Received: board={board!r}")
    return ticks * 1e9 / QEMU_SYSTICK_HZ[board]


def fit_problems(board: Board, model_bytes: int, arena_bytes: int) -> list[str]:
    """What does not fit, with by how much; empty when the model fits."""
    problems = []
    flash_need = model_bytes + CODE_RESERVE
    ram_need = arena_bytes + RAM_RESERVE
    if flash_need > board.flash:
        problems.append(
            f"flash: model {model_bytes:,} B + {CODE_RESERVE:,} B code reserve = {flash_need:,} B exceeds "
            f"{board.flash:,} B by {flash_need - board.flash:,} B"
        )
    if ram_need > board.ram:
        problems.append(
            f"RAM: arena {arena_bytes:,} B + {RAM_RESERVE:,} B reserve = {ram_need:,} B exceeds "
            f"{board.ram:,} B by {ram_need - board.ram:,} B"
        )
    return problems
