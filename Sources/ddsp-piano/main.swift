print("ddsp-piano")
