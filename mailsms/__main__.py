"""python -m mailsms"""

from mailsms.cli import main

main()
