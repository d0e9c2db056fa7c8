"""The Client API script each site runs under ``fedalign simulate --engine nvflare``.

NVFlare's ``ScriptRunner`` copies this file into the job and runs it in every site's process
(``python moe_site.py --world WORLD.json``); all the work is
:func:`fedalign.nvflare.client.moe_site_main`.
"""

from fedalign.nvflare.client import moe_site_main

if __name__ == "__main__":
    moe_site_main()
