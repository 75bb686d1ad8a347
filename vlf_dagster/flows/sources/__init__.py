"""Collection (as SiLK's libflowsource): NetFlow v5/v9 and IPFIX decoding (:mod:`.netflow`), packet
captures (:mod:`.pcap`), and the UDP collector (:mod:`.collector`, :mod:`.receive`) that spools
decoded flows into hourly landing files (:mod:`.spool`).
"""
